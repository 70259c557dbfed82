"""The AsyncAPI 3.0 document of the bus and the WebSocket, generated.

Channels and operations come from ``libs.bus.catalogue`` (the table the NATS
permissions are derived from too), payloads from the msgspec structs. The
document describes the backend as one application: it *sends* events,
deliveries and dead letters, and *receives* commands, queries and reports,
answering the requests on the requester's inbox.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.bus.catalogue import CHANNELS, PARAMETERS, Channel, Kind
from libs.schema import frames

ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "1.0.0"
_REF = "#/components/schemas/{name}"
_SEND_KINDS = {Kind.EVENT, Kind.DELIVERY, Kind.DEAD_LETTER}
_WEBSOCKET = "websocket"

_DESCRIPTION = """\
The subjects of the messaging backend's NATS bus, and the WebSocket frames of
its gateway. Generated from the code (`libs/bus/catalogue.py`,
`libs/schema/`); JSON Schemas of every payload are also in
`contracts/schemas/`.

* **Subjects** start with a prefix (`msg` here; `MSG_SUBJECT_PREFIX`), then
  the kind (`evt`, `cmd`, `qry`, ...), then the **tenant**. One permission,
  `msg.evt.<tenant>.>`, therefore covers exactly one tenant's events.
* **Events** are JSON envelopes `{type, id, tenant, time, version, data}`,
  kept in the streams named by each channel's `x-stream`. They are published
  with `Nats-Msg-Id` = `id`; JetStream drops a repeat within its duplicate
  window, so a consumer may still see one again later and must be idempotent
  on `id`. Rules for evolving them: `contracts/EVOLUTION.md`.
* **Integrators** get a NATS user scoped to one tenant (README: Integrators).
  It may subscribe to `msg.evt.<tenant>.>` and create consumers on the event
  streams, named after the user and filtered to that subject, through
  `$JS.API.CONSUMER.CREATE.<stream>.<user>.msg.evt.<tenant>.>`; its replies
  use the inbox prefix `_INBOX_<user>`. It may publish no command and no
  event.
* **Requests** (commands, queries) are answered on the requester's inbox,
  with a reply that has either its result or `error: {code, message}`.
* Channels and messages marked `x-internal` are between the backend's own
  services; integrators cannot reach them.
"""


def _asyncapi_schema(node: Any) -> Any:
    """JSON Schema from msgspec, as an AsyncAPI Schema Object: the
    ``discriminator`` there is the property name, not an object."""
    if isinstance(node, dict):
        out = {k: _asyncapi_schema(v) for k, v in node.items()}
        found = out.get("discriminator")
        if isinstance(found, dict):
            out["discriminator"] = found["propertyName"]
        return out
    if isinstance(node, list):
        return [_asyncapi_schema(item) for item in node]
    return node


def _types() -> list[Any]:
    out: list[Any] = []
    for ch in CHANNELS:
        for kind in (ch.payload, ch.reply):
            if kind is not None and kind not in out:
                out.append(kind)
    return [*out, frames.ServerFrame, frames.ClientFrame]


def _payload(kind: Any, refs: dict[Any, Any]) -> dict[str, Any]:
    return _asyncapi_schema(refs[kind])


def _headers(ch: Channel) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            h.name: {"type": "string", "description": h.description} for h in ch.headers
        },
    }


def _message(ch: Channel, kind: Any, refs: dict[Any, Any], reply: bool) -> dict:
    message: dict[str, Any] = {
        "name": f"{ch.name}.reply" if reply else ch.name,
        "title": f"{ch.name} reply" if reply else ch.name,
        "summary": f"The answer to {ch.name}" if reply else ch.summary,
        "contentType": "application/json",
        "payload": _payload(kind, refs),
    }
    if ch.headers and not reply:
        message["headers"] = _headers(ch)
    return message


def _description(ch: Channel) -> str:
    lines = [ch.summary, ""]
    lines.append(f"Published by: {', '.join(sorted(ch.publishers))}.")
    if ch.subscribers:
        lines.append(f"Subscribed to by: {', '.join(sorted(ch.subscribers))}.")
    if ch.stream:
        lines.append(f"Kept in the `{ch.stream}` stream.")
    if ch.consumers:
        lines.append(
            f"Read by the durable consumers {', '.join(sorted(ch.consumers))}."
        )
    if ch.own_token:
        lines.append(f"Each publisher fills `{{{ch.own_token}}}` with its own name.")
    if ch.for_integrators:
        lines.append("Integrators of the tenant may read it.")
    return "\n".join(lines)


def _channel(ch: Channel, prefix: str) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": ch.subject(prefix, **{p: f"{{{p}}}" for p in ch.parameters}),
        "title": ch.name,
        "summary": ch.summary,
        "description": _description(ch),
        "servers": [{"$ref": "#/servers/nats"}],
        "messages": {ch.id: {"$ref": f"#/components/messages/{ch.id}"}},
        "parameters": {
            p: {"$ref": f"#/components/parameters/{p}"} for p in ch.parameters
        },
        "tags": [{"name": ch.kind.value}],
        "x-publishers": sorted(ch.publishers),
        "x-subscribers": sorted(ch.subscribers),
    }
    if ch.stream:
        channel["x-stream"] = ch.stream
    if ch.consumers:
        channel["x-consumers"] = sorted(ch.consumers)
    if not ch.for_integrators:
        channel["x-internal"] = True
    return channel


def _operation(ch: Channel) -> tuple[str, dict[str, Any]]:
    action = "send" if ch.kind in _SEND_KINDS else "receive"
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{ch.id}"},
        "summary": ch.summary,
        "messages": [{"$ref": f"#/channels/{ch.id}/messages/{ch.id}"}],
        "tags": [{"name": ch.kind.value}],
    }
    if action == "receive" and len(ch.subscribers) == 1:
        (service,) = ch.subscribers
        operation["bindings"] = {"nats": {"queue": service, "bindingVersion": "0.1.0"}}
    if ch.reply is not None:
        reply = f"{ch.id}-reply"
        operation["reply"] = {
            "channel": {"$ref": f"#/channels/{reply}"},
            "messages": [{"$ref": f"#/channels/{reply}/messages/{reply}"}],
        }
    return f"{action}-{ch.id}", operation


def _websocket() -> tuple[dict, dict, dict]:
    """The gateway's socket: its channel, messages and operations."""
    server_frames = list(frames.ServerFrame.__args__)
    client_frames = list(frames.ClientFrame.__args__)
    messages = {}
    for frame in server_frames + client_frames:
        tag = frame.__struct_config__.tag
        messages[f"ws-{tag.replace(':', '-')}"] = {
            "name": tag,
            "title": f"{tag} frame",
            "summary": (frame.__doc__ or tag).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": _REF.format(name=frame.__name__)},
        }
    channel = {
        "address": "/api/messaging/ws",
        "title": "WebSocket",
        "summary": "Live events of one user, and the client's frames",
        "description": (
            "Open with `GET /api/messaging/ws` (see `contracts/openapi.json`), "
            "optionally `?since_seq=N` to replay what was missed first."
        ),
        "servers": [{"$ref": "#/servers/gateway"}],
        "messages": {mid: {"$ref": f"#/components/messages/{mid}"} for mid in messages},
        "tags": [{"name": _WEBSOCKET}],
    }

    def refs_of(group: list[Any]) -> list[dict[str, str]]:
        ids = [f"ws-{f.__struct_config__.tag.replace(':', '-')}" for f in group]
        return [{"$ref": f"#/channels/{_WEBSOCKET}/messages/{mid}"} for mid in ids]

    operations = {
        "send-websocket": {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_WEBSOCKET}"},
            "summary": "Frames the gateway writes to a socket",
            "messages": refs_of(server_frames),
        },
        "receive-websocket": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{_WEBSOCKET}"},
            "summary": "Frames a client may write",
            "messages": refs_of(client_frames),
        },
    }
    return channel, messages, operations


def document(prefix: str = "msg") -> dict[str, Any]:
    types = _types()
    ref_list, schemas = msgspec.json.schema_components(types, ref_template=_REF)
    refs = dict(zip(types, ref_list, strict=True))
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for ch in CHANNELS:
        channels[ch.id] = _channel(ch, prefix)
        messages[ch.id] = _message(ch, ch.payload, refs, reply=False)
        if ch.reply is not None:
            reply = f"{ch.id}-reply"
            messages[reply] = _message(ch, ch.reply, refs, reply=True)
            channels[reply] = {
                "address": None,
                "title": f"{ch.name} reply",
                "description": "The requester's inbox (its reply subject).",
                "servers": [{"$ref": "#/servers/nats"}],
                "messages": {reply: {"$ref": f"#/components/messages/{reply}"}},
            }
        name, operation = _operation(ch)
        operations[name] = operation
    ws_channel, ws_messages, ws_operations = _websocket()
    channels[_WEBSOCKET] = ws_channel
    messages.update(ws_messages)
    operations.update(ws_operations)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:messaging-backend",
        "info": {
            "title": "Messaging backend: bus and WebSocket",
            "version": CONTRACT_VERSION,
            "description": _DESCRIPTION,
            "tags": [{"name": kind.value} for kind in Kind] + [{"name": _WEBSOCKET}],
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "127.0.0.1:14222",
                "protocol": "nats",
                "description": (
                    "NATS with JetStream: `make run` listens on 127.0.0.1:14222, "
                    "`docker compose up` on localhost:4222."
                ),
                "security": [{"$ref": "#/components/securitySchemes/natsUser"}],
            },
            "gateway": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "The gateway's WebSocket endpoint.",
                "security": [{"$ref": "#/components/securitySchemes/bearer"}],
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {k: _asyncapi_schema(v) for k, v in schemas.items()},
            "messages": messages,
            "parameters": {
                name: {"description": text} for name, text in PARAMETERS.items()
            },
            "securitySchemes": {
                "natsUser": {
                    "type": "userPassword",
                    "description": (
                        "A NATS user: one per service, and one per integrator, "
                        "scoped to one tenant (`msgctl integrator add`)."
                    ),
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A client token; see contracts/openapi.json",
                },
            },
        },
    }
