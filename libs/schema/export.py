"""Generates ``contracts/``: what integrators and client developers read.

* ``schemas/``: a JSON Schema (2020-12) per payload, from the msgspec structs;
* ``asyncapi.json``: every bus channel and the WebSocket (AsyncAPI 3.0);
* ``openapi.json``: the gateway's HTTP API (OpenAPI 3.1).

All derived from the code, never written by hand; ``msgctl contracts``
rewrites them and a test fails when they are stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from libs.schema import api, asyncapi, events, frames, openapi

# contracts/schemas/<group>/<name>.json -> the type it describes
SCHEMA_TYPES: dict[str, Any] = {
    "events/event": events.Event,
    "events/message.accepted": events.MessageAccepted,
    "events/conversation.created": events.ConversationCreated,
    "events/message.rejected": events.MessageRejected,
    "events/presence.changed": events.PresenceChanged,
    "commands/message.send": api.SendMessage,
    "commands/message.send.reply": api.SendReply,
    "commands/conversation.create": api.CreateConversation,
    "commands/conversation.create.reply": api.ConversationReply,
    "queries/message.list": api.ListMessages,
    "queries/message.list.reply": api.MessagePageReply,
    "queries/message.since": api.MessagesSince,
    "queries/message.since.reply": api.MessagesSinceReply,
    "queries/message.get": api.GetMessage,
    "queries/message.get.reply": api.GetMessageReply,
    "queries/conversation.list": api.ListConversations,
    "queries/conversation.list.reply": api.ConversationPageReply,
    "queries/conversation.get": api.GetConversation,
    "queries/conversation.get.reply": api.ConversationReply,
    "queries/conversation.project": api.ProjectConversation,
    "commands/abuse.check": api.AbuseCheck,
    "commands/abuse.check.reply": api.AbuseVerdict,
    "commands/abuse.release": api.AbuseRelease,
    "commands/abuse.release.reply": api.AbuseReleaseReply,
    "presence/report": api.PresenceReport,
    "presence/report.reply": api.PresenceReportReply,
    "presence/query": api.PresenceQuery,
    "presence/query.reply": api.PresenceQueryReply,
    "http/send-request": api.SendRequest,
    "http/create-conversation-request": api.CreateConversationRequest,
    "http/message": api.Message,
    "http/message-page": api.MessagePage,
    "http/conversation": api.Conversation,
    "http/conversation-page": api.ConversationPage,
    "http/error": api.HttpError,
    "websocket/server-frame": frames.ServerFrame,
    "websocket/client-frame": frames.ClientFrame,
    "delivery/frame": frames.DeliveredFrame,
    "http/presence": api.PresenceList,
    "ws/presence-update": api.PresenceUpdate,
}


_dump = openapi.dump


def render() -> dict[str, str]:
    """Relative path under ``contracts/`` -> file content."""
    files = {}
    for name, kind in SCHEMA_TYPES.items():
        schema = msgspec.json.schema(kind)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:messaging:{name.replace('/', ':')}"
        files[f"schemas/{name}.json"] = _dump(schema)
    files["asyncapi.json"] = _dump(asyncapi.document())
    files["openapi.json"] = openapi.encoded().decode()
    return files


def render_infra() -> dict[str, str]:
    """Relative path under ``infra/`` -> file content (generated configs)."""
    from libs.bus import serverconf

    return {"nats/nats.conf": serverconf.container_config()}


def write(root: Path, files: dict[str, str]) -> list[str]:
    changed = []
    for rel, content in files.items():
        path = root / rel
        if not path.exists() or path.read_text() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            changed.append(rel)
    return changed


def stale(root: Path, files: dict[str, str]) -> list[str]:
    """Generated files missing from ``root`` or different from the code."""
    return [
        rel
        for rel, content in files.items()
        if not (root / rel).exists() or (root / rel).read_text() != content
    ]
