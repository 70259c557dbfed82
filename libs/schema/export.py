"""Generates ``contracts/``: the JSON Schemas integrators read.

The schemas are derived from the msgspec structs, never written by hand;
``msgctl contracts`` rewrites them and a test fails when they are stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from libs.schema import api, events

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
    "presence/report": api.PresenceReport,
    "presence/report.reply": api.PresenceReportReply,
    "presence/query": api.PresenceQuery,
    "presence/query.reply": api.PresenceQueryReply,
    "http/send-request": api.SendRequest,
    "http/create-conversation-request": api.CreateConversationRequest,
    "http/message": api.Message,
    "http/error": api.HttpError,
    "http/presence": api.PresenceList,
    "ws/presence-update": api.PresenceUpdate,
}


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """Relative path under ``contracts/`` -> file content."""
    files = {}
    for name, kind in SCHEMA_TYPES.items():
        schema = msgspec.json.schema(kind)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:messaging:{name.replace('/', ':')}"
        files[f"schemas/{name}.json"] = _dump(schema)
    return files


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
