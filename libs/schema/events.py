"""Events on the bus: what integrators subscribe to.

Every event is an envelope (type, id, tenant, time, version) around a payload
in ``data``. The ``type`` field tags the union, so one decoder reads any of
them. Evolution rules are in ``contracts/EVOLUTION.md``: a new field always has
a default, a field never changes type, a removed field's name is never reused,
and an incompatible change is a new ``type`` rather than a new meaning.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from libs.schema.types import (
    Body,
    ConversationId,
    EventClientMsgId,
    MessageId,
    TenantId,
    Timestamp,
    UserId,
)

SCHEMA_VERSION = 1


class AcceptedMessage(Struct, kw_only=True, omit_defaults=True):
    """A message as ingest accepted it; its ``seq`` is the event's stream sequence."""

    id: MessageId
    conversation_id: ConversationId
    sender_id: UserId
    body: Body
    created_at: Timestamp
    client_msg_id: EventClientMsgId | None = None


class ConversationData(Struct, kw_only=True, omit_defaults=True):
    id: ConversationId
    members: Annotated[list[UserId], Meta(min_length=1, max_length=1000)]
    created_by: UserId
    created_at: Timestamp
    title: Annotated[str, Meta(max_length=200)] | None = None


RejectionReason = Literal["rate_limited", "duplicate"]


class Rejection(Struct, kw_only=True, omit_defaults=True):
    conversation_id: ConversationId
    sender_id: UserId
    reason: RejectionReason
    body_sha256: Annotated[
        str, Meta(description="Hash of the normalised body; the body is not kept")
    ]
    client_msg_id: EventClientMsgId | None = None
    original_id: MessageId | None = None


PresenceStatus = Literal["online", "offline"]


class PresenceData(Struct, kw_only=True, omit_defaults=True):
    user_id: UserId
    status: PresenceStatus
    at: Timestamp
    last_seen: Timestamp | None = None


class EventBase(Struct, tag_field="type", kw_only=True, omit_defaults=True):
    id: Annotated[str, Meta(description="Unique event id; also the Nats-Msg-Id")]
    tenant: TenantId
    time: Timestamp
    version: int = SCHEMA_VERSION


class MessageAccepted(EventBase, tag="message.accepted"):
    """A send passed every check and is durable in the MESSAGES stream."""

    data: AcceptedMessage


class ConversationCreated(EventBase, tag="conversation.created"):
    """A conversation and its members; membership never changes afterwards."""

    data: ConversationData


class MessageRejected(EventBase, tag="message.rejected"):
    """A send refused by the abuse guard, kept for auditing."""

    data: Rejection


class PresenceChanged(EventBase, tag="presence.changed"):
    """A user went online (first device) or offline (last device)."""

    data: PresenceData


Event = MessageAccepted | ConversationCreated | MessageRejected | PresenceChanged
EVENT_TYPES: tuple[type[EventBase], ...] = (
    MessageAccepted,
    ConversationCreated,
    MessageRejected,
    PresenceChanged,
)
