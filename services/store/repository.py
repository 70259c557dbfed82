"""SQL for the read model: batched projection writes and keyset reads.

A page is bounded twice: by the count asked for, and by the size of its items
encoded as JSON (``PageBudget``), so that every reply fits in one NATS
message however big its items are. The SQL already stops once the raw size
of the text it returns passes the budget (JSON is never smaller than the text
it holds), so a page of large items costs no more than one of small ones.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import msgspec
from msgspec import Meta

from libs.membership import deliverable
from libs.schema.api import Conversation, Message
from libs.schema.events import AcceptedMessage, ConversationData
from libs.schema.types import ConversationId

# Half of NATS's default max_payload (1 MiB): room for the reply's envelope,
# and still many times the largest single item (a message of 4,000 escaped
# control characters is about 24 KB, a conversation of 1,000 members of 64
# characters about 70 KB), so every page holds at least one item.
PAGE_BUDGET = 512 * 1024
_encode = msgspec.json.Encoder().encode


class InvalidCursor(ValueError):
    pass


class PageBudget:
    """The bytes of JSON left for the items of one reply."""

    def __init__(self, total: int = PAGE_BUDGET) -> None:
        self.left = total
        self._empty = True

    def fit(self, items: Sequence[msgspec.Struct]) -> int:
        """How many of ``items``, from the first, fit in what is left; they
        take their room. The first item of a page always fits, so a page is
        never empty while items remain, and paging always moves on."""
        for count, item in enumerate(items):
            size = len(_encode(item)) + 1  # and its comma
            if size > self.left and not self._empty:
                return count
            self.left -= size
            self._empty = False
        return len(items)


@dataclass(frozen=True, slots=True)
class NewMessage:
    tenant: str
    seq: int
    message: AcceptedMessage


# Insert the ids first: only ids that were not there yet become rows in
# messages, so redeliveries and replays are no-ops. The conversation's
# activity is bumped in the same statement, hence the same transaction.
_INSERT_MESSAGES = """
WITH batch AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::timestamptz[], $8::bigint[]
    ) AS b(id, tenant_id, conversation_id, sender_id, body,
           client_msg_id, created_at, seq)
), fresh AS (
    INSERT INTO message_ids (id, tenant_id, conversation_id, created_at, seq)
    SELECT id, tenant_id, conversation_id, created_at, seq FROM batch
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), inserted AS (
    INSERT INTO messages (tenant_id, conversation_id, id, sender_id, body,
                          client_msg_id, created_at, seq)
    SELECT b.tenant_id, b.conversation_id, b.id, b.sender_id, b.body,
           b.client_msg_id, b.created_at, b.seq
    FROM batch b JOIN fresh USING (id)
    RETURNING tenant_id, conversation_id, created_at, seq
), activity AS (
    SELECT tenant_id, conversation_id, max(created_at) AS at, max(seq) AS seq
    FROM inserted GROUP BY tenant_id, conversation_id
    ORDER BY tenant_id, conversation_id
), bumped AS (
    UPDATE conversations c
    SET last_message_at = GREATEST(c.last_message_at, a.at),
        activity_at = GREATEST(c.activity_at, a.at),
        last_seq = GREATEST(c.last_seq, a.seq)
    FROM activity a
    WHERE c.tenant_id = a.tenant_id AND c.id = a.conversation_id
)
SELECT count(*) FROM inserted
"""

_INSERT_CONVERSATION = """
WITH conv AS (
    INSERT INTO conversations (tenant_id, id, title, created_by, created_at,
                               members, activity_at, last_message_at, last_seq)
    SELECT $1, $2, $3, $4, $5, $6::text[],
           GREATEST($5, m.last_at), m.last_at, COALESCE(m.last_seq, 0)
    FROM (SELECT max(created_at) AS last_at, max(seq) AS last_seq
          FROM messages WHERE conversation_id = $2 AND tenant_id = $1) m
    ON CONFLICT (tenant_id, id) DO NOTHING
    RETURNING tenant_id, id, members
)
INSERT INTO conversation_members (tenant_id, user_id, conversation_id)
SELECT tenant_id, unnest(members), id FROM conv
ON CONFLICT DO NOTHING
"""

_MESSAGE_COLUMNS = "id, conversation_id, sender_id, body, created_at, seq"


# Each page query keeps, of its first $limit rows, those whose preceding rows
# hold at most $budget bytes of text (``upto - size``): everything that may
# fit the page's JSON, and the first row that cannot, which tells the caller
# that more follow.
def _messages_page(after: str) -> str:
    return f"""
SELECT * FROM (
    SELECT {_MESSAGE_COLUMNS}, octet_length(body) AS size,
           sum(octet_length(body)) OVER newest AS upto
    FROM messages
    WHERE conversation_id = $1 AND tenant_id = $2 {after}
    WINDOW newest AS (ORDER BY created_at DESC, seq DESC)
    ORDER BY created_at DESC, seq DESC
    LIMIT $3
) page
WHERE upto - size <= $4
ORDER BY created_at DESC, seq DESC
"""


# Two statements rather than one with "$5 IS NULL OR ...": a generic plan of
# that could not use the keyset as an index condition.
_LIST_FIRST = _messages_page("")
_LIST_AFTER = _messages_page("AND (created_at, seq) < ($5, $6)")

_SINCE = """
SELECT * FROM (
    SELECT m.id, m.conversation_id, m.sender_id, m.body, m.created_at, m.seq,
           octet_length(m.body) AS size,
           sum(octet_length(m.body)) OVER (ORDER BY m.seq) AS upto
    FROM conversation_members cm
    JOIN messages m ON m.conversation_id = cm.conversation_id
    WHERE cm.tenant_id = $1 AND cm.user_id = $2 AND m.tenant_id = $1
      AND m.seq > $3 AND m.seq <= $5
    ORDER BY m.seq
    LIMIT $4
) page
WHERE upto - size <= $6
ORDER BY seq
"""

_CONVERSATION_COLUMNS = (
    "c.id, c.members, c.created_by, c.created_at, c.title, c.last_message_at, "
    "c.activity_at"
)

_CONVERSATION_SIZE = (
    "octet_length(array_to_string(c.members, '')) + coalesce(octet_length(c.title), 0)"
)


def _conversations_page(after: str) -> str:
    return f"""
SELECT * FROM (
    SELECT {_CONVERSATION_COLUMNS}, {_CONVERSATION_SIZE} AS size,
           sum({_CONVERSATION_SIZE}) OVER recent AS upto
    FROM conversation_members m
    JOIN conversations c
      ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id
    WHERE m.tenant_id = $1 AND m.user_id = $2 {after}
    WINDOW recent AS (ORDER BY c.activity_at DESC, c.id DESC)
    ORDER BY c.activity_at DESC, c.id DESC
    LIMIT $3
) page
WHERE upto - size <= $4
ORDER BY activity_at DESC, id DESC
"""


_CONVERSATIONS_FIRST = _conversations_page("")
_CONVERSATIONS_AFTER = _conversations_page("AND (c.activity_at, c.id) < ($5, $6)")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def encode_cursor(at: dt.datetime, key: int | str) -> str:
    micros = (at - _EPOCH) // dt.timedelta(microseconds=1)  # exact, unlike floats
    raw = msgspec.json.encode([micros, key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# What a cursor may hold once decoded, whoever wrote it: a time from the
# epoch to the end of year 9999 (what datetime holds; PostgreSQL holds more),
# and a key PostgreSQL can compare: a bigint seq or a conversation id.
_Micros = Annotated[int, Meta(ge=0, le=253_402_300_799_999_999)]
_Seq = Annotated[int, Meta(ge=0, le=2**63 - 1)]
_CURSORS: dict[type, msgspec.json.Decoder] = {
    int: msgspec.json.Decoder(tuple[_Micros, _Seq]),
    str: msgspec.json.Decoder(tuple[_Micros, ConversationId]),
}


def decode_cursor(cursor: str, key_type: type) -> tuple[dt.datetime, int | str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, key = _CURSORS[key_type].decode(raw)
    except (ValueError, msgspec.DecodeError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    return _EPOCH + dt.timedelta(microseconds=micros), key


def _message(row: asyncpg.Record) -> Message:
    return Message(
        id=str(row["id"]),
        conversation_id=row["conversation_id"],
        sender_id=row["sender_id"],
        body=row["body"],
        created_at=row["created_at"],
        seq=row["seq"],
    )


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(
        id=row["id"],
        # A member id stored before ids were checked to their true end names
        # no user anyone can sign in as; answering it would break readers.
        # Shortcoming: created_by (here) and sender_id (in messages) are not
        # filtered: such a row, possible only with a token signed by our own
        # secret, fails the gateway's decoding (500) until it is corrected.
        members=deliverable(row["members"])[0],
        created_by=row["created_by"],
        created_at=row["created_at"],
        title=row["title"],
        last_message_at=row["last_message_at"],
    )


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert_messages(self, batch: Sequence[NewMessage]) -> int:
        """Write a batch in one transaction; returns how many were new."""
        columns: tuple[list, ...] = ([], [], [], [], [], [], [], [])
        for item in batch:
            m = item.message
            for column, value in zip(
                columns,
                (
                    uuid.UUID(m.id),
                    item.tenant,
                    m.conversation_id,
                    m.sender_id,
                    m.body,
                    m.client_msg_id,
                    m.created_at,
                    item.seq,
                ),
                strict=True,
            ):
                column.append(value)
        async with self._pool.acquire() as conn:
            return await conn.fetchval(_INSERT_MESSAGES, *columns)

    async def insert_conversation(self, tenant: str, data: ConversationData) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _INSERT_CONVERSATION,
                tenant,
                data.id,
                data.title,
                data.created_by,
                data.created_at,
                data.members,
            )

    async def list_messages(
        self, tenant: str, conversation_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Message], str | None]:
        """A page, newest first, and the cursor of the next one if any."""
        budget = PageBudget()
        args = [conversation_id, tenant, limit + 1, budget.left]
        if cursor is not None:
            args += decode_cursor(cursor, int)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_LIST_AFTER if cursor else _LIST_FIRST, *args)
        page = [_message(r) for r in rows[:limit]]
        messages = page[: budget.fit(page)]
        next_cursor = None
        if len(rows) > len(messages):
            last = messages[-1]
            next_cursor = encode_cursor(last.created_at, last.seq)
        return messages, next_cursor

    async def messages_since(
        self,
        tenant: str,
        user_id: str,
        since_seq: int,
        until_seq: int,
        limit: int,
        budget: PageBudget,
    ) -> tuple[list[Message], bool]:
        """A member's messages with ``since_seq < seq <= until_seq``, as many
        as ``limit`` and ``budget`` allow, and whether more follow."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                _SINCE, tenant, user_id, since_seq, limit + 1, until_seq, budget.left
            )
        page = [_message(r) for r in rows[:limit]]
        messages = page[: budget.fit(page)]
        return messages, len(rows) > len(messages)

    async def message_stored(self, conversation_id: str, seq: int) -> bool:
        async with self._pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM messages "
                "WHERE conversation_id = $1 AND seq = $2)",
                conversation_id,
                seq,
            )

    async def get_message(self, tenant: str, message_id: str) -> Message | None:
        try:
            key = uuid.UUID(message_id)
        except ValueError:
            return None
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"""
                SELECT {_MESSAGE_COLUMNS} FROM messages m
                WHERE (m.conversation_id, m.created_at, m.seq) = (
                    SELECT conversation_id, created_at, seq FROM message_ids
                    WHERE id = $1 AND tenant_id = $2)
                """,
                key,
                tenant,
            )
        return None if row is None else _message(row)

    async def get_conversation(
        self, tenant: str, conversation_id: str
    ) -> Conversation | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c "
                "WHERE c.tenant_id = $1 AND c.id = $2",
                tenant,
                conversation_id,
            )
        return None if row is None else _conversation(row)

    async def list_conversations(
        self, tenant: str, user_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Conversation], str | None]:
        """A page, most recent activity first, and the next one's cursor."""
        budget = PageBudget()
        args = [tenant, user_id, limit + 1, budget.left]
        if cursor is not None:
            args += decode_cursor(cursor, str)
        query = _CONVERSATIONS_AFTER if cursor else _CONVERSATIONS_FIRST
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query, *args)
        page = [_conversation(r) for r in rows[:limit]]
        count = budget.fit(page)
        next_cursor = None
        if len(rows) > count:
            last = rows[count - 1]
            next_cursor = encode_cursor(last["activity_at"], last["id"])
        return page[:count], next_cursor
