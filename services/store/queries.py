"""Answers to the store's bus queries.

Membership is checked against the conversation as created (the
CONVERSATIONS stream, through ``MembershipDirectory``), which is correct even
before the conversation row is projected. Unknown conversations and those of
another tenant both answer ``not_found``, so ids leak nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from nats.aio.msg import Msg
from prometheus_client import Histogram

from libs.bus.codec import encode, error_reply, parse_request
from libs.bus.subjects import Subjects
from libs.membership import MembershipDirectory, deliverable
from libs.schema import errors
from libs.schema.api import (
    Conversation,
    ConversationPage,
    ConversationPageReply,
    ConversationReply,
    GetConversation,
    GetMessage,
    GetMessageReply,
    ListConversations,
    ListMessages,
    MessagePage,
    MessagePageReply,
    MessagesSince,
    MessagesSinceReply,
    ProjectConversation,
)
from libs.schema.events import ConversationData
from services.store.barrier import ProjectionBarrier
from services.store.repository import InvalidCursor, PageBudget, Repository
from services.store.tail import StreamTail

Handler = Callable[[Msg], Awaitable[bytes]]


def _from_event(data: ConversationData) -> Conversation:
    return Conversation(
        id=data.id,
        members=deliverable(data.members)[0],  # as Repository answers them
        created_by=data.created_by,
        created_at=data.created_at,
        title=data.title,
    )


class Queries:
    def __init__(
        self,
        repo: Repository,
        directory: MembershipDirectory,
        barrier: ProjectionBarrier,
        subjects: Subjects,
        db_seconds: Histogram,
        tail: StreamTail,
    ) -> None:
        self._tail = tail
        self._repo = repo
        self._directory = directory
        self._barrier = barrier
        self._subjects = subjects
        self._db_seconds = db_seconds

    def endpoints(self) -> dict[str, tuple[str, Handler]]:
        """Endpoint name -> (subject pattern, handler)."""
        s = self._subjects
        return {
            "message.list": (s.query("*", "message.list"), self.list_messages),
            "message.since": (s.query("*", "message.since"), self.messages_since),
            "message.get": (s.query("*", "message.get"), self.get_message),
            "conversation.list": (
                s.query("*", "conversation.list"),
                self.list_conversations,
            ),
            "conversation.get": (
                s.query("*", "conversation.get"),
                self.get_conversation,
            ),
            "conversation.project": (
                s.project_conversation("*"),
                self.project_conversation,
            ),
        }

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self._db_seconds.labels(operation).observe(time.perf_counter() - started)

    async def _conversation_for(
        self, tenant: str, user_id: str, conversation_id: str
    ) -> ConversationData | bytes:
        """The conversation if the user is a member, else the error to answer."""
        conv = await self._directory.get(tenant, conversation_id)
        if conv is None:
            return error_reply(errors.NOT_FOUND, "no such conversation")
        if user_id not in conv.members:
            return error_reply(
                errors.FORBIDDEN, "you are not a member of this conversation"
            )
        return conv

    async def list_messages(self, msg: Msg) -> bytes:
        q = parse_request(msg, ListMessages)
        if isinstance(q, bytes):
            return q
        conv = await self._conversation_for(q.tenant, q.user_id, q.conversation_id)
        if isinstance(conv, bytes):
            return conv
        if q.cursor is None:
            await self._barrier.conversation(q.tenant, q.conversation_id)
        try:
            with self._timed("list_messages"):
                messages, cursor = await self._repo.list_messages(
                    q.tenant, q.conversation_id, q.limit, q.cursor
                )
        except InvalidCursor as exc:
            return error_reply(errors.INVALID_CURSOR, str(exc))
        page = MessagePage(messages=messages, next_cursor=cursor)
        return encode(MessagePageReply(page=page))

    async def messages_since(self, msg: Msg) -> bytes:
        """Everything after ``since_seq``, exactly: the read model up to the
        store's ack floor, then the newest events straight from the stream.
        A store replica that died holding events leaves them unprojected
        until their redelivery; reading the tail from the stream means a
        resuming socket never waits for that, nor misses them."""
        q = parse_request(msg, MessagesSince)
        if isinstance(q, bytes):
            return q
        floor, last = await self._barrier.projection_window()
        budget = PageBudget()
        with self._timed("messages_since"):
            stored, more = await self._repo.messages_since(
                q.tenant, q.user_id, q.since_seq, floor, q.limit, budget
            )
        if more:
            return encode(MessagesSinceReply(messages=stored, more=True))
        tail = await self._tail.read(
            q.tenant, q.user_id, max(q.since_seq, floor) + 1, last
        )
        taken = budget.fit(tail[: q.limit - len(stored)])
        messages = stored + tail[:taken]
        return encode(MessagesSinceReply(messages=messages, more=len(tail) > taken))

    async def get_message(self, msg: Msg) -> bytes:
        q = parse_request(msg, GetMessage)
        if isinstance(q, bytes):
            return q
        with self._timed("get_message"):
            found = await self._repo.get_message(q.tenant, q.message_id)
        if found is None:
            return error_reply(errors.NOT_FOUND, "no such message")
        return encode(GetMessageReply(message=found))

    async def list_conversations(self, msg: Msg) -> bytes:
        q = parse_request(msg, ListConversations)
        if isinstance(q, bytes):
            return q
        try:
            with self._timed("list_conversations"):
                items, cursor = await self._repo.list_conversations(
                    q.tenant, q.user_id, q.limit, q.cursor
                )
        except InvalidCursor as exc:
            return error_reply(errors.INVALID_CURSOR, str(exc))
        page = ConversationPage(conversations=items, next_cursor=cursor)
        return encode(ConversationPageReply(page=page))

    async def get_conversation(self, msg: Msg) -> bytes:
        q = parse_request(msg, GetConversation)
        if isinstance(q, bytes):
            return q
        conv = await self._conversation_for(q.tenant, q.user_id, q.conversation_id)
        if isinstance(conv, bytes):
            return conv
        with self._timed("get_conversation"):
            stored = await self._repo.get_conversation(q.tenant, q.conversation_id)
        # Created but not projected yet: the event already says it all.
        return encode(ConversationReply(conversation=stored or _from_event(conv)))

    async def project_conversation(self, msg: Msg) -> bytes:
        q = parse_request(msg, ProjectConversation)
        if isinstance(q, bytes):
            return q
        # The stream, not the request, says what was created.
        data = await self._directory.get(q.tenant, q.conversation_id)
        if data is None:
            return error_reply(errors.NOT_FOUND, "no such conversation")
        with self._timed("insert_conversation"):
            await self._repo.insert_conversation(q.tenant, data)
        return encode(ConversationReply(conversation=_from_event(data)))
