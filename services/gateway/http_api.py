"""The HTTP API under ``/api/messaging``: messages, conversations, presence.

The tenant always comes from the token, never from the request.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from aiohttp import web

from libs import auth
from libs.bus.codec import decoder, encode
from libs.bus.subjects import Subjects
from libs.schema import errors
from libs.schema.api import (
    PAGE_DEFAULT,
    PAGE_MAX,
    PRESENCE_QUERY_MAX,
    ConversationPageReply,
    ConversationReply,
    CreateConversation,
    CreateConversationRequest,
    GetConversation,
    LimitInfo,
    ListConversations,
    ListMessages,
    MessagePageReply,
    PresenceList,
    PresenceQuery,
    PresenceQueryReply,
    SendMessage,
    SendReply,
    SendRequest,
)
from libs.schema.types import PATTERN_RULES, is_id
from libs.text import InvalidBody, InvalidTitle, check_body, check_title
from services.gateway.auth import authenticate, bearer_token
from services.gateway.backend import Backend
from services.gateway.errors import ApiError

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    payload: object, status: int = 200, headers: dict | None = None
) -> web.Response:
    return web.Response(
        body=encode(payload),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request, kind: type[T]) -> T:
    try:
        raw = await request.read()  # over client_max_size: aiohttp raises 413
    except web.RequestPayloadError as exc:  # a gzip body that does not unzip
        raise ApiError(
            errors.INVALID_REQUEST, "request body could not be decoded"
        ) from exc
    if not raw.strip():
        raise ApiError(errors.INVALID_JSON, "request body must be a JSON object")
    try:
        return decoder(kind).decode(raw)
    except msgspec.ValidationError as exc:
        raise ApiError(errors.INVALID_REQUEST, _readable(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(errors.INVALID_JSON, f"malformed JSON: {exc}") from exc


def _readable(message: str) -> str:
    """msgspec's message, with a rule in words where it quotes a regex."""
    for pattern, rule in PATTERN_RULES.items():
        message = message.replace(f"`str` matching regex {pattern!r}", rule)
    return message


def rate_limit_headers(limit: LimitInfo | None) -> dict[str, str]:
    """IETF draft RateLimit fields (draft-ietf-httpapi-ratelimit-headers-11):
    a policy named by a String with quota ``q`` and window ``w``, and the
    current ``r`` (sends left) and ``t`` (seconds until one more fits).

    ``t`` is rounded up, like ``Retry-After``: a client that waits that long
    finds a slot free, where rounding down would send it back too early.
    """
    if limit is None:
        return {}
    reset = max(0, math.ceil(limit.reset))
    return {
        "RateLimit-Policy": f'"sends";q={limit.limit};w={limit.window}',
        "RateLimit": f'"sends";r={max(0, limit.remaining)};t={reset}',
    }


def query_int(raw: str, name: str) -> int:
    """A query parameter of plain ASCII digits (Python's int() would also
    take "1_0", " 7" and other scripts' digits)."""
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(errors.INVALID_REQUEST, f"{name} must be a whole number")
    return int(raw)


def _query_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return PAGE_DEFAULT
    limit = query_int(raw, "limit")
    if limit < 1:
        raise ApiError(errors.INVALID_REQUEST, "limit must be at least 1")
    return min(limit, PAGE_MAX)


def _query_id(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise ApiError(errors.INVALID_REQUEST, f"query parameter {name} is required")
    return _checked_id(value, name)


def _checked_id(value: str, name: str) -> str:
    if not is_id(value):
        raise ApiError(errors.INVALID_REQUEST, f"{name} is not a valid id")
    return value


def _query_user_ids(request: web.Request) -> list[str]:
    """``user_ids=a,b,c`` (or repeated), each once, in the order given."""
    raw = ",".join(request.query.getall("user_ids", []))
    if not raw:
        raise ApiError(errors.INVALID_REQUEST, "query parameter user_ids is required")
    user_ids = list(dict.fromkeys(raw.split(",")))
    if len(user_ids) > PRESENCE_QUERY_MAX:
        raise ApiError(
            errors.INVALID_REQUEST,
            f"at most {PRESENCE_QUERY_MAX} user_ids per request",
        )
    for user_id in user_ids:
        if not is_id(user_id):
            raise ApiError(
                errors.INVALID_REQUEST,
                "user_ids must be comma-separated user ids; "
                f"{user_id[:70]!r} is not one",
            )
    return user_ids


class MessagingApi:
    def __init__(
        self, backend: Backend, subjects: Subjects, tokens: auth.VerifiedTokens
    ) -> None:
        self._backend = backend
        self._subjects = subjects
        self._tokens = tokens

    def handlers(self) -> dict[str, Handler]:
        """Handlers by operation id (``libs.schema.http.ENDPOINTS``)."""
        return {
            "send": self.send,
            "list_messages": self.list_messages,
            "create_conversation": self.create_conversation,
            "list_conversations": self.list_conversations,
            "get_conversation": self.get_conversation,
            "presence": self.presence,
        }

    def principal(self, request: web.Request) -> auth.Principal:
        return authenticate(self._tokens, bearer_token(request))

    async def send(self, request: web.Request) -> web.Response:
        who = self.principal(request)
        body = await read_json(request, SendRequest)
        try:
            check_body(body.body)
        except InvalidBody as exc:
            raise ApiError(errors.INVALID_BODY, str(exc)) from exc
        command = SendMessage(
            tenant=who.tenant,
            sender_id=who.user_id,
            conversation_id=body.conversation_id,
            body=body.body,
            client_msg_id=body.client_msg_id,
        )
        reply = await self._backend.call(
            self._subjects.send(who.tenant), command, SendReply, "ingest"
        )
        headers = rate_limit_headers(reply.limit)
        if reply.error is not None:
            raise ApiError.from_info(reply.error, headers)
        if reply.replayed:
            headers["Idempotent-Replayed"] = "true"
        return json_response(reply.message, status=201, headers=headers)

    async def list_messages(self, request: web.Request) -> web.Response:
        who = self.principal(request)
        query = ListMessages(
            tenant=who.tenant,
            user_id=who.user_id,
            conversation_id=_query_id(request, "conversation_id"),
            limit=_query_limit(request),
            cursor=request.query.get("cursor") or None,
        )
        reply = await self._backend.call(
            self._subjects.query(who.tenant, "message.list"),
            query,
            MessagePageReply,
            "store",
        )
        if reply.error is not None:
            raise ApiError.from_info(reply.error)
        return json_response(reply.page)

    async def create_conversation(self, request: web.Request) -> web.Response:
        who = self.principal(request)
        body = await read_json(request, CreateConversationRequest)
        if body.title is not None:
            try:
                check_title(body.title)
            except InvalidTitle as exc:
                raise ApiError(errors.INVALID_REQUEST, str(exc)) from exc
        command = CreateConversation(
            tenant=who.tenant,
            creator_id=who.user_id,
            members=body.members,
            title=body.title,
        )
        reply = await self._backend.call(
            self._subjects.create_conversation(who.tenant),
            command,
            ConversationReply,
            "ingest",
        )
        if reply.error is not None:
            raise ApiError.from_info(reply.error)
        return json_response(reply.conversation, status=201)

    async def list_conversations(self, request: web.Request) -> web.Response:
        who = self.principal(request)
        query = ListConversations(
            tenant=who.tenant,
            user_id=who.user_id,
            limit=_query_limit(request),
            cursor=request.query.get("cursor") or None,
        )
        reply = await self._backend.call(
            self._subjects.query(who.tenant, "conversation.list"),
            query,
            ConversationPageReply,
            "store",
        )
        if reply.error is not None:
            raise ApiError.from_info(reply.error)
        return json_response(reply.page)

    async def get_conversation(self, request: web.Request) -> web.Response:
        who = self.principal(request)
        conversation_id = request.match_info["conversation_id"]
        if not is_id(conversation_id):
            raise ApiError(errors.NOT_FOUND, "no such conversation")
        query = GetConversation(
            tenant=who.tenant, user_id=who.user_id, conversation_id=conversation_id
        )
        reply = await self._backend.call(
            self._subjects.query(who.tenant, "conversation.get"),
            query,
            ConversationReply,
            "store",
        )
        if reply.error is not None:
            raise ApiError.from_info(reply.error)
        return json_response(reply.conversation)

    async def presence(self, request: web.Request) -> web.Response:
        """Status and last_seen of users of the caller's own tenant."""
        who = self.principal(request)
        query = PresenceQuery(tenant=who.tenant, user_ids=_query_user_ids(request))
        reply = await self._backend.call(
            self._subjects.presence_query(who.tenant),
            query,
            PresenceQueryReply,
            "presence",
        )
        if reply.error is not None:
            raise ApiError.from_info(reply.error)
        return json_response(PresenceList(users=reply.users))
