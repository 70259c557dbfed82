"""Every channel on the bus, described once.

Each ``Channel`` says what travels on a subject, who publishes it, who
subscribes to or answers it, and which stream keeps it. The AsyncAPI document
in ``contracts/`` and the NATS permissions of every service and integrator are
both derived from ``CHANNELS``, so the documentation, the permissions and the
code that builds subjects (``Subjects``, checked against this table by a test)
cannot drift apart.

Addresses are written without the subject prefix (``MSG_SUBJECT_PREFIX``,
``msg`` by default); ``{name}`` marks a token that varies. The tenant is always
the token after the kind, so ``<prefix>.evt.<tenant>.>`` is one tenant's events.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from libs.bus.subjects import (
    AUDIT_STREAM,
    CONVERSATIONS_STREAM,
    DEADLETTER_STREAM,
    MESSAGES_STREAM,
    PRESENCE_STREAM,
)
from libs.schema import api, events, frames

# Service names: the NATS user of each service and its queue group.
GATEWAY = "gateway"
INGEST = "ingest"
STORE = "store"
FANOUT = "fanout"
ABUSE_GUARD = "abuse-guard"
PRESENCE = "presence"
SERVICES = (GATEWAY, INGEST, STORE, FANOUT, ABUSE_GUARD, PRESENCE)

_PARAM = re.compile(r"\{([a-z_]+)\}")


class Kind(enum.StrEnum):
    EVENT = "event"  # kept in a stream; integrators read these
    COMMAND = "command"  # request that changes state; answered with a reply
    QUERY = "query"  # request that reads; answered with a reply
    REPORT = "report"  # fire-and-forget notice to one service
    DELIVERY = "delivery"  # per-user frames from fanout to gateways
    DEAD_LETTER = "dead_letter"  # events a consumer gave up on


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    address: str
    kind: Kind
    summary: str
    payload: Any
    publishers: frozenset[str]
    subscribers: frozenset[str] = frozenset()
    reply: Any = None
    stream: str | None = None
    # Services reading the stream through durable consumers (not subscribers).
    consumers: frozenset[str] = frozenset()
    headers: tuple[Header, ...] = ()
    # A parameter each publisher may only fill with its own service name.
    own_token: str | None = None
    # The ``Subjects`` method that builds this address, and its fixed arguments.
    builder: str = ""
    builder_args: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """A key usable in AsyncAPI maps (letters, digits, ``-`` and ``_``)."""
        return self.name.replace(".", "-")

    @property
    def parameters(self) -> list[str]:
        return _PARAM.findall(self.address)

    @property
    def for_integrators(self) -> bool:
        return self.kind is Kind.EVENT

    def subject(self, prefix: str, **values: str) -> str:
        """The concrete subject; parameters missing from ``values`` become ``*``."""
        return f"{prefix}." + _PARAM.sub(
            lambda m: values.get(m.group(1), "*"), self.address
        )


_EVENT_HEADERS = (
    Header("Nats-Msg-Id", "The event id; JetStream drops a repeat within its window"),
    Header("traceparent", "W3C trace context of the request that caused the event"),
)
_REQUEST_HEADERS = (Header("traceparent", "W3C trace context of the caller"),)

CHANNELS: tuple[Channel, ...] = (
    # ------------------------------------------------------------- events
    Channel(
        name="message.accepted",
        address="evt.{tenant}.message.accepted.{conversation_id}",
        kind=Kind.EVENT,
        summary="A send passed every check and is durable.",
        payload=events.MessageAccepted,
        publishers=frozenset({INGEST}),
        stream=MESSAGES_STREAM,
        consumers=frozenset({STORE, FANOUT}),
        headers=_EVENT_HEADERS,
        builder="message_accepted",
    ),
    Channel(
        name="conversation.created",
        address="evt.{tenant}.conversation.created.{conversation_id}",
        kind=Kind.EVENT,
        summary="A conversation and its members (which never change).",
        payload=events.ConversationCreated,
        publishers=frozenset({INGEST}),
        stream=CONVERSATIONS_STREAM,
        consumers=frozenset({STORE}),
        headers=_EVENT_HEADERS,
        builder="conversation_created",
    ),
    Channel(
        name="message.rejected",
        address="evt.{tenant}.message.rejected.{conversation_id}",
        kind=Kind.EVENT,
        summary="A send refused by the abuse guard, kept for auditing.",
        payload=events.MessageRejected,
        publishers=frozenset({ABUSE_GUARD}),
        stream=AUDIT_STREAM,
        headers=_EVENT_HEADERS,
        builder="message_rejected",
    ),
    Channel(
        name="presence.changed",
        address="evt.{tenant}.presence.changed.{user_id}",
        kind=Kind.EVENT,
        summary="A user went online (first device) or offline (last device).",
        payload=events.PresenceChanged,
        publishers=frozenset({PRESENCE}),
        # Gateways turn these into presence:update frames for open sockets.
        subscribers=frozenset({GATEWAY}),
        stream=PRESENCE_STREAM,
        headers=_EVENT_HEADERS,
        builder="presence_changed",
    ),
    # ----------------------------------------------------------- commands
    Channel(
        name="message.send",
        address="cmd.{tenant}.message.send",
        kind=Kind.COMMAND,
        summary="Send a message; answered once its event is durable.",
        payload=api.SendMessage,
        reply=api.SendReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({INGEST}),
        headers=_REQUEST_HEADERS,
        builder="send",
    ),
    Channel(
        name="conversation.create",
        address="cmd.{tenant}.conversation.create",
        kind=Kind.COMMAND,
        summary="Create a conversation; answered once its event is durable.",
        payload=api.CreateConversation,
        reply=api.ConversationReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({INGEST}),
        headers=_REQUEST_HEADERS,
        builder="create_conversation",
    ),
    # ------------------------------------------------------------ queries
    Channel(
        name="message.list",
        address="qry.{tenant}.message.list",
        kind=Kind.QUERY,
        summary="A page of a conversation's messages, newest first.",
        payload=api.ListMessages,
        reply=api.MessagePageReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({STORE}),
        headers=_REQUEST_HEADERS,
        builder="query",
        builder_args={"name": "message.list"},
    ),
    Channel(
        name="message.since",
        address="qry.{tenant}.message.since",
        kind=Kind.QUERY,
        summary="A member's messages after a stream sequence (socket resume).",
        payload=api.MessagesSince,
        reply=api.MessagesSinceReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({STORE}),
        headers=_REQUEST_HEADERS,
        builder="query",
        builder_args={"name": "message.since"},
    ),
    Channel(
        name="message.get",
        address="qry.{tenant}.message.get",
        kind=Kind.QUERY,
        summary="One stored message by id (late client_msg_id retries).",
        payload=api.GetMessage,
        reply=api.GetMessageReply,
        publishers=frozenset({INGEST}),
        subscribers=frozenset({STORE}),
        headers=_REQUEST_HEADERS,
        builder="query",
        builder_args={"name": "message.get"},
    ),
    Channel(
        name="conversation.list",
        address="qry.{tenant}.conversation.list",
        kind=Kind.QUERY,
        summary="A page of a user's conversations, most recent activity first.",
        payload=api.ListConversations,
        reply=api.ConversationPageReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({STORE}),
        headers=_REQUEST_HEADERS,
        builder="query",
        builder_args={"name": "conversation.list"},
    ),
    Channel(
        name="conversation.get",
        address="qry.{tenant}.conversation.get",
        kind=Kind.QUERY,
        summary="One conversation, for its members only.",
        payload=api.GetConversation,
        reply=api.ConversationReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({STORE}),
        headers=_REQUEST_HEADERS,
        builder="query",
        builder_args={"name": "conversation.get"},
    ),
    Channel(
        name="conversation.project",
        address="store.{tenant}.conversation.project",
        kind=Kind.COMMAND,
        summary="Project a just-created conversation now (read your writes).",
        payload=api.ProjectConversation,
        reply=api.ConversationReply,
        publishers=frozenset({INGEST}),
        subscribers=frozenset({STORE}),
        headers=_REQUEST_HEADERS,
        builder="project_conversation",
    ),
    # ------------------------------------------------ abuse guard, presence
    Channel(
        name="abuse.check",
        address="abuse.{tenant}.check",
        kind=Kind.QUERY,
        summary="May this user send this body now? Counts the send if so.",
        payload=api.AbuseCheck,
        reply=api.AbuseVerdict,
        publishers=frozenset({INGEST}),
        subscribers=frozenset({ABUSE_GUARD}),
        headers=_REQUEST_HEADERS,
        builder="abuse_check",
    ),
    Channel(
        name="abuse.release",
        address="abuse.{tenant}.release",
        kind=Kind.COMMAND,
        summary="Undo an allowed send whose event could not be published.",
        payload=api.AbuseRelease,
        reply=api.AbuseReleaseReply,
        publishers=frozenset({INGEST}),
        subscribers=frozenset({ABUSE_GUARD}),
        headers=_REQUEST_HEADERS,
        builder="abuse_release",
    ),
    Channel(
        name="presence.report",
        address="presence.{tenant}.report",
        kind=Kind.COMMAND,
        summary="A gateway reports sockets opened, closed, or still alive; "
        "answered so the gateway can retry what was not recorded.",
        payload=api.PresenceReport,
        reply=api.PresenceReportReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({PRESENCE}),
        headers=_REQUEST_HEADERS,
        builder="presence_report",
    ),
    Channel(
        name="presence.query",
        address="presence.{tenant}.query",
        kind=Kind.QUERY,
        summary="Who of these users is online now.",
        payload=api.PresenceQuery,
        reply=api.PresenceQueryReply,
        publishers=frozenset({GATEWAY}),
        subscribers=frozenset({PRESENCE}),
        headers=_REQUEST_HEADERS,
        builder="presence_query",
    ),
    # ---------------------------------------------------------- delivery
    Channel(
        name="delivery",
        address="dlv.{tenant}.{user_id}",
        kind=Kind.DELIVERY,
        summary="A WebSocket frame for every open socket of one user.",
        payload=frames.DeliveredFrame,
        publishers=frozenset({FANOUT}),
        subscribers=frozenset({GATEWAY}),
        headers=(
            Header("Msg-Id", "Message id; gateways drop a repeat per socket"),
            Header("Msg-Seq", "The message's MESSAGES stream sequence"),
            Header("Msg-Time", "When it was accepted, in Unix milliseconds"),
            Header("traceparent", "W3C trace context of the fan-out"),
        ),
        builder="delivery",
    ),
    Channel(
        name="dead-letter",
        address="dlq.{consumer}.{tenant}",
        kind=Kind.DEAD_LETTER,
        summary="An event a durable consumer gave up on, unchanged, with why.",
        payload=events.Event,
        publishers=frozenset({STORE, FANOUT}),
        stream=DEADLETTER_STREAM,
        headers=(
            Header("Msg-Dead-Reason", "Why the consumer gave up"),
            Header("Msg-Origin-Stream", "The stream the event came from"),
            Header("Msg-Origin-Seq", "Its sequence in that stream"),
            Header("Msg-Origin-Subject", "Its subject in that stream"),
            Header("Nats-Msg-Id", "<stream>:<seq>:<consumer>, so it is parked once"),
        ),
        own_token="consumer",
        builder="dead_letter",
    ),
)

PARAMETERS = {
    "tenant": "Tenant (company) id; the same as the `tenant` claim of client tokens",
    "conversation_id": "Conversation id",
    "user_id": "User id, unique within its tenant",
    "consumer": "Name of the durable consumer that gave up (`store`, `fanout`)",
}


def channel(name: str) -> Channel:
    for found in CHANNELS:
        if found.name == name:
            return found
    raise KeyError(name)


def event_streams() -> list[str]:
    """Streams holding events integrators may read, in catalogue order."""
    out: list[str] = []
    for ch in CHANNELS:
        if ch.for_integrators and ch.stream and ch.stream not in out:
            out.append(ch.stream)
    return out


def stream_of(event_type: str) -> str:
    found = channel(event_type)
    if found.kind is not Kind.EVENT or found.stream is None:
        raise KeyError(f"{event_type} is not an event")
    return found.stream
