"""The AsyncAPI, OpenAPI and JSON Schema documents are valid, describe what
the code does, and what a real send produces matches them."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import nats
import pytest
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from prometheus_client import CollectorRegistry
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from libs.bus.catalogue import CHANNELS
from libs.bus.subjects import Subjects
from libs.config import Settings
from libs.service import Runtime
from services.gateway.__main__ import build_app
from services.gateway.admission import LoopLag
from services.gateway.metrics import GatewayMetrics
from services.gateway.sessions import Sessions
from tests.support import Client, unique

with warnings.catch_warnings():  # its models shadow pydantic attributes
    warnings.simplefilter("ignore", UserWarning)
    from asyncapi3.models.asyncapi import AsyncAPI3
from pydantic import ValidationError

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def _load(name: str) -> dict[str, Any]:
    return json.loads((CONTRACTS / name).read_text())


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        _load(f"schemas/{name}.json"),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def _pointer(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


# ------------------------------------------------------------------ OpenAPI


def test_openapi_document_is_valid_openapi_3_1() -> None:
    document = _load("openapi.json")

    validate_openapi(document)

    assert document["openapi"] == "3.1.0"
    broken = copy.deepcopy(document)
    broken["paths"]["/api/messaging"]["post"]["responses"]["201"] = {"content": {}}
    with pytest.raises(OpenAPIValidationError):
        validate_openapi(broken)


def test_openapi_documents_every_route_the_gateway_serves() -> None:
    settings = Settings(service="gateway", jwt_secret="s" * 40)
    registry = CollectorRegistry()
    runtime = Runtime(settings=settings, registry=registry, subjects=Subjects())
    metrics = GatewayMetrics(registry)
    sessions = Sessions(None, Subjects(), metrics)
    lag = LoopLag(metrics, max_lag=settings.gateway_max_loop_lag)
    app = build_app(runtime, None, sessions, metrics, lag)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
    }

    documented = {
        (method, path)
        for path, operations in _load("openapi.json")["paths"].items()
        for method in operations
    }

    assert served == documented


def test_openapi_lists_every_error_status_with_its_codes() -> None:
    send = _load("openapi.json")["paths"]["/api/messaging"]["post"]
    responses = _load("openapi.json")["components"]["responses"]

    assert set(send["responses"]) == {
        "201", "400", "401", "403", "404", "409", "413", "429", "500", "503"
    }  # fmt: skip
    assert set(send["responses"]["201"]["headers"]) == {
        "Idempotent-Replayed",
        "RateLimit",
        "RateLimit-Policy",
    }
    assert "`rate_limited`" in responses["E429"]["description"]
    assert "Retry-After" in responses["E429"]["headers"]
    assert "Retry-After" in responses["E503"]["headers"]
    assert "WWW-Authenticate" in responses["E401"]["headers"]


# ------------------------------------------------------------- JSON Schema


def test_every_json_schema_is_valid_2020_12() -> None:
    paths = sorted((CONTRACTS / "schemas").rglob("*.json"))

    for path in paths:
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)

    assert len(paths) >= 30
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema({"type": "text"})


# ---------------------------------------------------------------- AsyncAPI


def _asyncapi_problems(document: dict[str, Any]) -> list[str]:
    """What the object model does not check: references, and the rules that
    tie operations to channels and addresses to parameters."""
    problems = [
        f"unresolved {r}" for r in _refs(document) if not _resolves(document, r)
    ]
    for name, op in document["operations"].items():
        channel = op["channel"]["$ref"]
        for message in op["messages"]:
            if not message["$ref"].startswith(f"{channel}/messages/"):
                problems.append(f"{name}: {message['$ref']} not in {channel}")
        if "reply" in op:
            reply = op["reply"]["channel"]["$ref"]
            for message in op["reply"]["messages"]:
                if not message["$ref"].startswith(f"{reply}/messages/"):
                    problems.append(f"{name}: reply {message['$ref']}")
    for name, channel in document["channels"].items():
        address = channel.get("address") or ""
        wanted = {p[1:-1] for p in address.split(".") if p.startswith("{")}
        if wanted != set(channel.get("parameters", {})):
            problems.append(f"{name}: parameters do not match {address}")
    return problems


def _resolves(document: dict[str, Any], ref: str) -> bool:
    try:
        _pointer(document, ref)
    except (KeyError, TypeError):
        return False
    return True


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    document = _load("asyncapi.json")

    AsyncAPI3.model_validate(document)

    assert document["asyncapi"] == "3.0.0"
    assert _asyncapi_problems(document) == []
    typo = copy.deepcopy(document)
    typo["channels"]["message-accepted"]["adress"] = "msg.evt"
    bad_action = copy.deepcopy(document)
    bad_action["operations"]["send-message-accepted"]["action"] = "publish"
    for broken in (typo, bad_action):
        with pytest.raises(ValidationError):
            AsyncAPI3.model_validate(broken)
    dangling = copy.deepcopy(document)
    dangling["operations"]["send-message-accepted"]["messages"][0]["$ref"] += "x"
    assert _asyncapi_problems(dangling) != []


def test_asyncapi_has_every_channel_of_the_catalogue() -> None:
    channels = _load("asyncapi.json")["channels"]

    for ch in CHANNELS:
        assert channels[ch.id]["address"] == ch.subject(
            "msg", **{p: f"{{{p}}}" for p in ch.parameters}
        )
        assert channels[ch.id]["x-publishers"] == sorted(ch.publishers)
        assert ch.reply is None or f"{ch.id}-reply" in channels
    addresses = [c["address"] for c in channels.values() if c["address"]]
    assert "msg.evt.{tenant}.message.accepted.{conversation_id}" in addresses
    assert "msg.qry.{tenant}.message.list" in addresses
    assert "msg.dlv.{tenant}.{user_id}" in addresses
    assert "/api/messaging/ws" in addresses


# ------------------------------------------- what the running system does


def _check_answer(path: str, method: str, status: int, body: Any) -> None:
    document = _load("openapi.json")
    registry = Registry().with_resource(
        "urn:openapi", Resource(contents=document, specification=DRAFT202012)
    )
    response = document["paths"][path][method]["responses"][str(status)]
    pointer = f"/paths/{path.replace('/', '~1')}/{method}/responses/{status}"
    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
    schema = {"$ref": f"urn:openapi#{pointer}/content/application~1json/schema"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)


async def test_served_openapi_is_the_contract(
    client: Client, http: aiohttp.ClientSession
) -> None:
    reply = await client.request("GET", "/api/messaging/openapi.json")

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body == _load("openapi.json")


async def test_a_real_send_matches_the_contracts(client: Client, nc: nats.NATS) -> None:
    tenant = unique()
    events = await nc.subscribe(f"msg.evt.{tenant}.>")
    delivered = await nc.subscribe(f"msg.dlv.{tenant}.bob")
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    bob = await client.ws(tenant, "bob")

    sent = await client.send(tenant, "alice", conv["id"], "by the contract")
    listed = await client.list_messages(tenant, "bob", conv["id"])
    refused = await client.list_messages(tenant, "mallory", conv["id"])
    created_event = json.loads((await events.next_msg(timeout=5)).data)
    accepted_event = json.loads((await events.next_msg(timeout=5)).data)
    frame_msg = await delivered.next_msg(timeout=5)
    frame = json.loads((await bob.ws.receive(timeout=5)).data)

    _validator("events/conversation.created").validate(created_event)
    _validator("events/message.accepted").validate(accepted_event)
    _validator("events/event").validate(accepted_event)
    _validator("http/conversation").validate(conv)
    _validator("http/message").validate(sent.body)
    _validator("http/message-page").validate(listed.body)
    _validator("http/error").validate(refused.body)
    _validator("delivery/frame").validate(json.loads(frame_msg.data))
    _validator("websocket/server-frame").validate(frame)
    _check_answer("/api/messaging/conversations", "post", 201, conv)
    _check_answer("/api/messaging", "post", 201, sent.body)
    _check_answer("/api/messaging", "get", 200, listed.body)
    _check_answer("/api/messaging", "get", refused.status, refused.body)
    assert refused.status == 403
    assert {"Msg-Id", "Msg-Seq", "Msg-Time"} <= set(frame_msg.headers)
    assert frame["event"] == "messages:new"
    wrong = {**accepted_event, "tenant": "not.a.token"}
    with pytest.raises(jsonschema.ValidationError):
        _validator("events/message.accepted").validate(wrong)
    with pytest.raises(jsonschema.ValidationError):
        _check_answer("/api/messaging", "post", 201, {**sent.body, "seq": "1"})
    await bob.close()
    await events.unsubscribe()
    await delivered.unsubscribe()
