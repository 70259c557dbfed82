"""One send is one trace, across every service process it passes through."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from libs.devstack.stack import SERVICES
from tests.observability.conftest import Span, SpanLog
from tests.support import Client, unique

# The services a send passes through, in order. Of these, the test expects
# spans from those the stack runs (abuse-guard joins when it is in SERVICES).
SEND_PATH = ("gateway", "ingest", "abuse-guard", "store", "fanout")


def _by_id(spans: list[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def _ancestors(span: Span, spans: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id is not None and span.parent_id in spans:
        span = spans[span.parent_id]
        chain.append(span)
    return chain


async def test_one_send_is_one_trace_across_every_service(
    client: Client, span_log: SpanLog
) -> None:
    tenant, alice, bob = unique(), unique("u"), unique("u")
    conv = await client.create_conversation(tenant, alice, [bob])
    bob_socket = await client.ws(tenant, bob)

    sent = await client.send(tenant, alice, conv["id"], "follow me")
    await bob_socket.next_event("messages:new")
    await bob_socket.close()

    assert sent.status == 201
    expected = {s for s in SEND_PATH if s in SERVICES}
    publish = await span_log.find(
        lambda s: (
            s.attributes.get("messaging.message.id") == sent.body["id"]
            and s.kind == "PRODUCER"
        )
    )

    def complete(spans: list[Span]) -> bool:
        names = {(s.service, s.name) for s in spans}
        return {s.service for s in spans} >= expected and {
            ("store", "store process"),
            ("fanout", "fanout process"),
            ("gateway", "messages:new deliver"),
        } <= names

    spans = await span_log.trace(publish.trace_id, complete)
    by_id = _by_id(spans)
    assert complete(spans), sorted((s.service, s.name) for s in spans)
    roots = [s for s in spans if s.parent_id is None]
    assert {s.service for s in spans} == expected
    # One root, the gateway's request span; every other span hangs off it.
    assert [(r.service, r.name, r.kind) for r in roots] == [
        ("gateway", "POST /api/messaging", "SERVER")
    ]
    assert all(s.parent_id in by_id for s in spans if s is not roots[0])
    assert roots[0].attributes["http.response.status_code"] == 201
    # gateway -> ingest: the bus request is a child of the HTTP request span.
    ingest_server = next(
        s for s in spans if s.service == "ingest" and s.kind == "SERVER"
    )
    assert [(a.service, a.kind) for a in _ancestors(ingest_server, by_id)] == [
        ("gateway", "CLIENT"),
        ("gateway", "SERVER"),
    ]
    # ingest -> JetStream -> store and fanout, each from the publish span.
    assert publish.service == "ingest"
    assert _ancestors(publish, by_id)[0] is ingest_server
    for consumer in ("store", "fanout"):
        process = next(s for s in spans if s.name == f"{consumer} process")
        assert process.service == consumer
        assert process.kind == "CONSUMER"
        assert process.parent_id == publish.span_id
        assert process.attributes["messaging.message.id"] == sent.body["id"]
    # fanout -> gateway: the delivery to bob's socket closes the trace.
    delivered = next(s for s in spans if s.name == "messages:new deliver")
    assert delivered.service == "gateway"
    assert by_id[delivered.parent_id].name == "fanout process"


async def test_a_client_traceparent_is_continued(
    client: Client, span_log: SpanLog
) -> None:
    tenant, alice = unique(), unique("u")
    conv = await client.create_conversation(tenant, alice, [unique("u")])
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)

    sent = await client.request(
        "POST",
        "/api/messaging",
        token=client.token(tenant, alice),
        json_body={"conversation_id": conv["id"], "body": "traced by the client"},
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
    )

    assert sent.status == 201
    spans = await span_log.trace(
        f"0x{trace_id}",
        lambda spans: {"gateway", "ingest"} <= {s.service for s in spans},
    )
    request = next(s for s in spans if s.kind == "SERVER" and s.service == "gateway")
    assert request.parent_id == f"0x{parent_id}"
    assert {"gateway", "ingest"} <= {s.service for s in spans}


def _loaded_after_setup(endpoint: str) -> bool:
    """Whether setting up tracing in a fresh process imports the OTLP exporter."""
    code = (
        "import sys\n"
        "from libs.telemetry import tracing\n"
        f"provider = tracing.setup('probe', 'probe-0', {endpoint!r})\n"
        "loaded = 'opentelemetry.exporter.otlp.proto.http' in sys.modules\n"
        "provider.shutdown()\n"
        "print(loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


def test_the_otlp_exporter_is_used_only_when_an_endpoint_is_set() -> None:
    assert _loaded_after_setup("") is False
    # Nothing is sent: no span is made before the provider shuts down.
    assert _loaded_after_setup("http://127.0.0.1:9") is True


def test_tracing_is_off_when_nothing_exports() -> None:
    code = (
        "from libs.telemetry import tracing\n"
        "tracing.setup('probe', 'probe-0', '')\n"
        "t = tracing.tracer('probe')\n"
        "with tracing.span(t, 'x', parent={'traceparent': "
        "'00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'}) as s:\n"
        "    assert not s.is_recording()\n"
        "    assert tracing.inject({}) == {}\n"
        "print('off')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MSG_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "off"
