"""The gateway's HTTP endpoints, described once.

The gateway builds its routes from ``ENDPOINTS`` and the OpenAPI document in
``contracts/openapi.json`` is generated from the same table and the msgspec
structs, so a route cannot exist without being documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.schema import api, errors
from libs.schema.api import PAGE_DEFAULT, PAGE_MAX
from libs.schema.types import TOKEN_PATTERN

BASE = "/api/messaging"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str  # "query" or "path"
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    operation: str  # the operationId, and the name of the gateway's handler
    method: str
    path: str
    summary: str
    status: int  # of a success
    response: Any = None  # the struct answered on success
    request: Any = None  # the struct of the JSON body
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    headers: tuple[str, ...] = ()  # response headers of a success
    public: bool = False  # no token needed
    tag: str = "messaging"
    description: str = ""


_ID = {"type": "string", "pattern": TOKEN_PATTERN}
_LIMIT = Param(
    "limit",
    "query",
    f"Page size; {PAGE_DEFAULT} by default, at most {PAGE_MAX} (larger is "
    "capped). A page of large items holds fewer (about 512 KiB of them, at "
    "least one): read on while `next_cursor` is not null",
    {"type": "integer", "minimum": 1, "default": PAGE_DEFAULT},
)
_CURSOR = Param(
    "cursor",
    "query",
    "The `next_cursor` of the previous page; opaque",
    {"type": "string"},
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "send",
        "POST",
        BASE,
        "Send a message to a conversation",
        201,
        response=api.Message,
        request=api.SendRequest,
        errors=(400, 401, 403, 404, 409, 413, 429, 500, 503),
        headers=("Idempotent-Replayed", "RateLimit", "RateLimit-Policy"),
        description=(
            "Answered once the message is durable. A retry with the same "
            "`client_msg_id` answers the original message again, with "
            "`Idempotent-Replayed: true`, and never creates a second one."
        ),
    ),
    Endpoint(
        "list_messages",
        "GET",
        BASE,
        "A page of a conversation's messages, newest first",
        200,
        response=api.MessagePage,
        errors=(400, 401, 403, 404, 500, 503),
        params=(
            Param("conversation_id", "query", "The conversation", _ID, True),
            _LIMIT,
            _CURSOR,
        ),
    ),
    Endpoint(
        "create_conversation",
        "POST",
        f"{BASE}/conversations",
        "Create a conversation; the creator is always a member",
        201,
        response=api.Conversation,
        request=api.CreateConversationRequest,
        errors=(400, 401, 413, 500, 503),
    ),
    Endpoint(
        "list_conversations",
        "GET",
        f"{BASE}/conversations",
        "A page of my conversations, most recent activity first",
        200,
        response=api.ConversationPage,
        errors=(400, 401, 500, 503),
        params=(_LIMIT, _CURSOR),
    ),
    Endpoint(
        "get_conversation",
        "GET",
        f"{BASE}/conversations/{{conversation_id}}",
        "One conversation (members only)",
        200,
        response=api.Conversation,
        errors=(401, 403, 404, 500, 503),
        params=(Param("conversation_id", "path", "The conversation", _ID, True),),
    ),
    Endpoint(
        "presence",
        "GET",
        f"{BASE}/presence",
        "Who of these users (of my tenant) is online, and when each was last seen",
        200,
        response=api.PresenceList,
        errors=(400, 401, 500, 503),
        params=(
            Param(
                "user_ids",
                "query",
                f"Comma-separated user ids, at most {api.PRESENCE_QUERY_MAX}; "
                "users never seen answer offline with `last_seen: null`",
                {"type": "string"},
                True,
            ),
        ),
        tag="realtime",
    ),
    Endpoint(
        "websocket",
        "GET",
        f"{BASE}/ws",
        "Live events over a WebSocket",
        101,
        errors=(400, 401, 429),
        params=(
            Param(
                "token",
                "query",
                "A client token, for browsers that cannot set headers",
                {"type": "string"},
            ),
            Param(
                "since_seq",
                "query",
                "Replay every message of my conversations with a greater `seq` "
                "first, in order and once",
                {"type": "integer", "minimum": 0},
            ),
        ),
        public=True,  # the token may also come in the first frame
        tag="realtime",
        description=(
            "Upgrade to a WebSocket. Authenticate with the `Authorization` "
            'header, `?token=`, or a first frame `{"event": "auth", "data": '
            '{"token": "..."}}` within 10 s. Frames are JSON `{"event", '
            '"data"}`; their schemas are `ServerFrame` and `ClientFrame` '
            "below and in `contracts/asyncapi.json` (channel `websocket`). "
            "Close codes: 4001 token expired, 4003 unauthorized, 4008 too "
            "slow, 1001 gateway shutting down, 1013 history unavailable; "
            "after any of them, reconnect with `since_seq`. A user holds at "
            "most 16 sockets on a gateway (`MSG_WS_MAX_PER_USER`): one more is "
            "refused with 429 `too_many_sockets`, or closed 4029 when it "
            "authenticates by its first frame."
        ),
    ),
    Endpoint(
        "openapi",
        "GET",
        f"{BASE}/openapi.json",
        "This document",
        200,
        public=True,
        tag="meta",
    ),
)

# Error statuses, the codes each may carry, and what they mean.
ERROR_STATUS = {
    400: "The request is malformed: bad JSON or UTF-8, a missing, unknown or "
    "wrongly typed field, a body breaking the rules, a cursor we did not issue",
    401: "No token, or an expired, unsigned, wrongly signed or claim-less one",
    403: "You are not a member of the conversation",
    404: "No such conversation, or another tenant's (ids leak nothing)",
    409: "The same body again, by the same user in the same conversation, "
    "within the suppression window (`duplicate`); or a `client_msg_id` already "
    "used for another message, in another conversation or with another body "
    "(`client_msg_id_reused`)",
    413: "The request body is over 64 KiB",
    429: "Over your send limit (`rate_limited`): retry after `Retry-After` "
    "seconds; or, opening a WebSocket, too many sockets of yours already open "
    "on this gateway (`too_many_sockets`): close one first",
    500: "A bug on our side",
    503: "A service behind the gateway is down (`unavailable`), or the gateway "
    "already waits on as many calls as it may (`overloaded`): retry after "
    "`Retry-After` seconds (a send with `client_msg_id` is safe to retry)",
}


def error_codes(status: int) -> list[str]:
    return sorted(c for c, s in errors.HTTP_STATUS.items() if s == status)


HEADERS = {
    "Idempotent-Replayed": (
        "`true` when a retry with the same `client_msg_id` answered the original",
        {"type": "string", "enum": ["true"]},
    ),
    "RateLimit": (
        'Remaining sends and seconds until a slot frees up: `"sends";r=4;t=12`',
        {"type": "string"},
    ),
    "RateLimit-Policy": (
        'Your send limit and its window in seconds: `"sends";q=20;w=60`',
        {"type": "string"},
    ),
    "Retry-After": ("Seconds to wait before retrying", {"type": "integer"}),
    "WWW-Authenticate": ('`Bearer realm="messaging"`', {"type": "string"}),
}
ERROR_HEADERS = {
    401: ("WWW-Authenticate",),
    429: ("Retry-After", "RateLimit", "RateLimit-Policy"),
    503: ("Retry-After",),
}


def endpoint(operation: str) -> Endpoint:
    for found in ENDPOINTS:
        if found.operation == operation:
            return found
    raise KeyError(operation)
