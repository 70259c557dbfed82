"""Commands, queries and their replies, as services exchange them over NATS.

The gateway's HTTP bodies are these same structs, so the OpenAPI document and
the bus contracts cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from libs.schema.events import PresenceStatus
from libs.schema.types import (
    TOKEN_PATTERN,
    ClientMsgId,
    ConversationId,
    MessageId,
    Seq,
    TenantId,
    Timestamp,
    Title,
    UserId,
    whole,
)

PAGE_MAX = 200
PAGE_DEFAULT = 50
PRESENCE_QUERY_MAX = 100  # user ids per presence query
PRESENCE_REPORT_MAX = 1000  # socket entries per presence report

# ---------------------------------------------------------------- shared parts


class ErrorInfo(Struct, kw_only=True, omit_defaults=True):
    code: Annotated[str, Meta(description="Stable, machine-readable error code")]
    message: Annotated[str, Meta(description="Human-readable explanation")]
    original_id: MessageId | None = None
    retry_after: Annotated[float, Meta(ge=0)] | None = None


class LimitInfo(Struct, kw_only=True):
    """The sender's rate-limit state after this send, for RateLimit headers."""

    limit: int
    remaining: int
    reset: Annotated[float, Meta(description="Seconds until a slot frees up")]
    window: Annotated[int, Meta(description="Window length in seconds")]


class Message(Struct, kw_only=True):
    """A stored message, as clients receive it over HTTP and the WebSocket."""

    id: MessageId
    conversation_id: ConversationId
    sender_id: UserId
    body: str
    created_at: Timestamp
    seq: Seq


class Conversation(Struct, kw_only=True, omit_defaults=True):
    id: ConversationId
    members: list[UserId]
    created_by: UserId
    created_at: Timestamp
    title: str | None = None
    last_message_at: Timestamp | None = None


# -------------------------------------------------------------- HTTP requests


class SendRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/messaging``."""

    conversation_id: ConversationId
    body: str
    client_msg_id: ClientMsgId | None = None


class CreateConversationRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/messaging/conversations``."""

    members: Annotated[list[UserId], Meta(min_length=1, max_length=1000)]
    title: Title | None = None


# ------------------------------------------------------------ bus: commands


class SendMessage(Struct, kw_only=True, omit_defaults=True):
    """``<p>.cmd.<tenant>.message.send``, answered by ingest."""

    tenant: TenantId
    sender_id: UserId
    conversation_id: ConversationId
    body: str
    client_msg_id: ClientMsgId | None = None


class SendReply(Struct, kw_only=True, omit_defaults=True):
    message: Message | None = None
    error: ErrorInfo | None = None
    limit: LimitInfo | None = None
    replayed: Annotated[
        bool, Meta(description="True when a client_msg_id retry answered the original")
    ] = False


class CreateConversation(Struct, kw_only=True, omit_defaults=True):
    """``<p>.cmd.<tenant>.conversation.create``, answered by ingest."""

    tenant: TenantId
    creator_id: UserId
    members: list[UserId]
    title: Title | None = None


class ConversationReply(Struct, kw_only=True, omit_defaults=True):
    conversation: Conversation | None = None
    error: ErrorInfo | None = None


# --------------------------------------------------------- bus: abuse guard

Verdict = Literal["allow", "rate_limited", "duplicate", "retry"]
Fingerprint = Annotated[
    str,
    Meta(
        pattern=whole("[0-9a-f]{64}"),
        description="SHA-256 (hex) of the body normalised for comparing: NFC, "
        "trimmed, inner whitespace runs as one space",
    ),
]


class AbuseCheck(Struct, kw_only=True, omit_defaults=True):
    """``<p>.abuse.<tenant>.check``: ingest asks before it publishes a send.

    An allowed send is recorded at once (it counts against the limit and
    marks its body as seen), so the guard must be asked once per attempt.
    """

    tenant: TenantId
    sender_id: UserId
    conversation_id: ConversationId
    message_id: Annotated[
        MessageId, Meta(description="The id the send gets if it is accepted")
    ]
    body_fingerprint: Fingerprint
    client_msg_id: ClientMsgId | None = None


class AbuseRelease(AbuseCheck, kw_only=True, omit_defaults=True):
    """``<p>.abuse.<tenant>.release``: forget an allowed send that could not
    be made durable, so the client's resend is neither a duplicate nor
    counted twice. Same fields as the check it undoes."""


class AbuseVerdict(Struct, kw_only=True, omit_defaults=True):
    """The guard's answer: ``allow`` (publish it), ``rate_limited`` (429),
    ``duplicate`` (409, ``original_id`` is the earlier send) or ``retry``
    (the same ``client_msg_id`` was allowed before: answer that message)."""

    verdict: Verdict | None = None
    limit: LimitInfo | None = None
    retry_after: Annotated[float, Meta(ge=0)] | None = None
    original_id: MessageId | None = None
    degraded: Annotated[
        bool,
        Meta(
            description="Answered from one replica's memory because Redis is "
            "unreachable; earlier sends may be unknown to it"
        ),
    ] = False
    error: ErrorInfo | None = None


class AbuseReleaseReply(Struct, kw_only=True, omit_defaults=True):
    released: bool = False
    error: ErrorInfo | None = None


# ------------------------------------------------------------- bus: queries


class ListMessages(Struct, kw_only=True, omit_defaults=True):
    """``<p>.qry.<tenant>.message.list``, answered by store."""

    tenant: TenantId
    user_id: UserId
    conversation_id: ConversationId
    limit: Annotated[int, Meta(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT
    cursor: str | None = None


class MessagePage(Struct, kw_only=True):
    messages: list[Message]
    next_cursor: str | None


class MessagePageReply(Struct, kw_only=True, omit_defaults=True):
    page: MessagePage | None = None
    error: ErrorInfo | None = None


class MessagesSince(Struct, kw_only=True):
    """``<p>.qry.<tenant>.message.since``: a member's messages after a seq."""

    tenant: TenantId
    user_id: UserId
    since_seq: Annotated[int, Meta(ge=0)]
    limit: Annotated[int, Meta(ge=1, le=1000)] = 500


class MessagesSinceReply(Struct, kw_only=True, omit_defaults=True):
    messages: list[Message] = []
    more: bool = False
    error: ErrorInfo | None = None


class GetMessage(Struct, kw_only=True):
    """``<p>.qry.<tenant>.message.get``: one message by id, if stored."""

    tenant: TenantId
    message_id: MessageId


class GetMessageReply(Struct, kw_only=True, omit_defaults=True):
    message: Message | None = None
    error: ErrorInfo | None = None


class ListConversations(Struct, kw_only=True, omit_defaults=True):
    """``<p>.qry.<tenant>.conversation.list``: the caller's conversations."""

    tenant: TenantId
    user_id: UserId
    limit: Annotated[int, Meta(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT
    cursor: str | None = None


class ConversationPage(Struct, kw_only=True):
    conversations: list[Conversation]
    next_cursor: str | None


class ConversationPageReply(Struct, kw_only=True, omit_defaults=True):
    page: ConversationPage | None = None
    error: ErrorInfo | None = None


class GetConversation(Struct, kw_only=True):
    """``<p>.qry.<tenant>.conversation.get``: one conversation, members only."""

    tenant: TenantId
    user_id: UserId
    conversation_id: ConversationId


class ProjectConversation(Struct, kw_only=True):
    """``<p>.store.<tenant>.conversation.project``: project a just-created
    conversation now, from its event, so the creator's next read sees it."""

    tenant: TenantId
    conversation_id: ConversationId


# ------------------------------------------------------------- bus: presence

GatewayInstance = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        description="The reporting gateway replica (its MSG_INSTANCE)",
    ),
]
ConnectionId = Annotated[
    str,
    Meta(
        pattern=TOKEN_PATTERN,
        description="One socket, unique within its gateway replica",
    ),
]


class SocketRef(Struct, kw_only=True):
    """One WebSocket of a user on the reporting gateway."""

    user_id: UserId
    connection: ConnectionId


SocketRefs = Annotated[list[SocketRef], Meta(max_length=PRESENCE_REPORT_MAX)]


class PresenceReport(Struct, kw_only=True, omit_defaults=True):
    """``<p>.presence.<tenant>.report``: a gateway's sockets that opened,
    are still open (heartbeats) or closed since its last report, answered by
    presence. Applied in that order; every entry is idempotent."""

    tenant: TenantId
    gateway: GatewayInstance
    connects: SocketRefs = []
    heartbeats: SocketRefs = []
    disconnects: SocketRefs = []


class PresenceReportReply(Struct, kw_only=True, omit_defaults=True):
    error: ErrorInfo | None = None


class PresenceQuery(Struct, kw_only=True):
    """``<p>.presence.<tenant>.query``: the status of some users of a tenant."""

    tenant: TenantId
    user_ids: Annotated[list[UserId], Meta(min_length=1, max_length=PRESENCE_QUERY_MAX)]


class UserPresence(Struct, kw_only=True):
    """``last_seen``: the last time a socket of the user was known open
    (null if never seen); for an online user, within one heartbeat."""

    user_id: UserId
    status: PresenceStatus
    last_seen: Timestamp | None


class PresenceList(Struct, kw_only=True):
    """``GET /api/messaging/presence``: one entry per requested user."""

    users: list[UserPresence]


class PresenceQueryReply(Struct, kw_only=True, omit_defaults=True):
    users: list[UserPresence] = []
    error: ErrorInfo | None = None


class PresenceUpdate(Struct, kw_only=True):
    """Data of the ``presence:update`` WebSocket frame. For one user, the
    update with the latest ``at`` is the current one."""

    user_id: UserId
    status: PresenceStatus
    at: Timestamp


class HttpError(Struct, kw_only=True):
    """Every 4xx/5xx body the gateway answers."""

    error: ErrorInfo


def error(code: str, message: str, **extra: Any) -> ErrorInfo:
    return ErrorInfo(code=code, message=message, **extra)
