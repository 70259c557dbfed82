"""After a send, every service's /metrics shows what an SRE runs the system by."""

from __future__ import annotations

import asyncio
import math

import aiohttp

from libs.devstack.stack import SERVICES, Stack
from tests.observability.conftest import Families, sample_sum, scrape
from tests.support import Client, unique

SLO_EDGES = {0.4, 0.6, 2.0, 5.0}
CONSUMER = {
    "messaging_consumer_events": "counter",
    "messaging_consumer_redeliveries": "counter",
    "messaging_consumer_dead_letters": "counter",
    "messaging_consumer_pending": "gauge",
    "messaging_consumer_ack_pending": "gauge",
    "messaging_consumer_batch_duration_seconds": "histogram",
}
BUS = {
    "messaging_bus_requests": "counter",
    "messaging_bus_request_duration_seconds": "histogram",
}
GATEWAY = {
    "messaging_http_requests": "counter",
    "messaging_http_request_duration_seconds": "histogram",
    "messaging_ws_connections": "gauge",
    "messaging_ws_connects": "counter",
    "messaging_ws_disconnects": "counter",
    "messaging_delivery_latency_seconds": "histogram",
}
# Measured at the gateway, but only once the presence service exists.
PRESENCE = {"messaging_presence_update_latency_seconds": "histogram"}
# Families (as the parser names them: counters without ``_total``) each
# service must expose, by service name.
REQUIRED = {
    "gateway": {**GATEWAY, **(PRESENCE if "presence" in SERVICES else {})},
    "ingest": {**BUS, "messaging_ingest_sends": "counter"},
    "store": {**BUS, **CONSUMER, "messaging_db_query_duration_seconds": "histogram"},
    "fanout": CONSUMER,
    "abuse-guard": {**BUS, "messaging_abuse_rejections": "counter"},
}
RATE_FAMILIES = {
    "messaging_http_requests",
    "messaging_bus_requests",
    "messaging_consumer_events",
}


async def _scrape_all(stack: Stack, http: aiohttp.ClientSession) -> dict[str, Families]:
    """Each service's families, by replica name (``store-0``)."""
    pages = await asyncio.gather(*(scrape(http, p.url) for p in stack.services))
    return {p.name: page for p, page in zip(stack.services, pages, strict=True)}


async def _until(predicate, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def test_every_service_shows_its_series_after_a_send(
    stack: Stack, client: Client, http: aiohttp.ClientSession
) -> None:
    gateway = stack.service("gateway")
    before = await _scrape_all(stack, http)
    tenant, alice, bob = unique(), unique("u"), unique("u")
    conv = await client.create_conversation(tenant, alice, [bob])
    bob_socket = await client.ws(tenant, bob)

    sent = await client.send(tenant, alice, conv["id"], "measure me")
    await bob_socket.next_event("messages:new")
    listed = await client.list_messages(tenant, bob, conv["id"])
    await bob_socket.close()

    async def both_consumers_acked() -> bool:
        for name, consumer in (
            ("store", "messages.store"),
            ("fanout", "messages.fanout"),
        ):
            proc = stack.service(name)
            acked = {"consumer": consumer, "outcome": "ack"}
            now = await scrape(http, proc.url)
            was = before[proc.name]
            sample = "messaging_consumer_events_total"
            if sample_sum(now, sample, **acked) <= sample_sum(was, sample, **acked):
                return False
        return True

    await _until(both_consumers_acked)
    after = await _scrape_all(stack, http)

    assert (sent.status, listed.status) == (201, 200)
    for proc in stack.services:
        families = after[proc.name]
        wanted = REQUIRED.get(proc.service, {})
        shown = {name: families[name].type for name in wanted if name in families}
        assert shown == wanted, proc.name
        info = families["messaging_build_info"].samples
        assert [s.labels["service"] for s in info] == [proc.service]
        assert RATE_FAMILIES & set(families), f"{proc.name} shows no rate"
        latency = [
            f
            for f in families.values()
            if f.type == "histogram" and f.name.endswith("_seconds")
        ]
        assert latency, f"{proc.name} shows no latency histogram"
        for family in latency:
            edges = {
                float(s.labels["le"])
                for s in family.samples
                if s.name.endswith("_bucket")
            }
            if not edges:  # a labelled histogram nothing has observed yet
                continue
            assert edges >= SLO_EDGES, family.name
            assert len({e for e in edges if e < 0.4}) >= 5, family.name
            assert math.inf in edges

    def delta(name: str, sample: str, **labels: str) -> float:
        proc = stack.service(name)
        return sample_sum(after[proc.name], sample, **labels) - sample_sum(
            before[proc.name], sample, **labels
        )

    post = {"route": "/api/messaging", "method": "POST"}
    assert delta("gateway", "messaging_http_requests_total", **post, status="201") == 1
    assert (
        delta("gateway", "messaging_http_request_duration_seconds_count", **post) == 1
    )
    assert (
        delta(
            "gateway",
            "messaging_http_request_duration_seconds_bucket",
            route="/api/messaging",
            method="GET",
            le="+Inf",
        )
        == 1
    )
    assert (
        delta(
            "gateway", "messaging_delivery_latency_seconds_count", event="messages:new"
        )
        == 1
    )
    assert delta("gateway", "messaging_ws_connects_total") == 1
    assert delta("ingest", "messaging_ingest_sends_total", outcome="accepted") == 1
    assert (
        delta(
            "ingest",
            "messaging_bus_requests_total",
            endpoint="message.send",
            outcome="ok",
        )
        == 1
    )
    for operation in ("insert_messages", "list_messages"):
        assert (
            delta(
                "store",
                "messaging_db_query_duration_seconds_count",
                operation=operation,
            )
            >= 1
        )
    for name, consumer in (("store", "messages.store"), ("fanout", "messages.fanout")):
        assert (
            delta(
                name,
                "messaging_consumer_events_total",
                consumer=consumer,
                outcome="ack",
            )
            >= 1
        )
        shown = {
            s.name
            for f in after[stack.service(name).name].values()
            for s in f.samples
            if s.labels.get("consumer") == consumer
        }
        assert {
            "messaging_consumer_pending",
            "messaging_consumer_redeliveries_total",
            "messaging_consumer_dead_letters_total",
        } <= shown

    # The sockets' disconnects, by a reason from a small fixed set.
    disconnects = after[gateway.name]["messaging_ws_disconnects"].samples
    assert {s.labels["reason"] for s in disconnects} >= {"client", "slow"}

    # No label anywhere carries a user, conversation or message id.
    ids = {alice, bob, conv["id"], sent.body["id"]}
    for name, families in after.items():
        for family in families.values():
            for s in family.samples:
                leaks = [v for v in s.labels.values() if any(i in v for i in ids)]
                assert not leaks, (name, s.name, leaks)
