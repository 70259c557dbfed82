"""The read model's tables, and the daily partitions of ``messages``.

Applied by ``msgctl bootstrap`` (never implicitly by a running service).
Everything here is a projection of the streams and can be rebuilt from them.
"""

from __future__ import annotations

import datetime as dt
import logging

import asyncpg

log = logging.getLogger("store.schema")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS conversations (
    tenant_id text NOT NULL,
    id text NOT NULL,
    title text,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    members text[] NOT NULL,
    last_message_at timestamptz,
    last_seq bigint NOT NULL DEFAULT 0,
    activity_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE IF NOT EXISTS conversation_members (
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    conversation_id text NOT NULL,
    PRIMARY KEY (tenant_id, user_id, conversation_id)
);

-- One row per message id, in a plain table: a partitioned table can only
-- enforce uniqueness within a partition, and a redelivered or replayed event
-- must never become a second row whatever its timestamp.
CREATE TABLE IF NOT EXISTS message_ids (
    id uuid PRIMARY KEY,
    tenant_id text NOT NULL,
    conversation_id text NOT NULL,
    created_at timestamptz NOT NULL,
    seq bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS message_ids_created_at ON message_ids (created_at);

CREATE TABLE IF NOT EXISTS messages (
    tenant_id text NOT NULL,
    conversation_id text NOT NULL,
    id uuid NOT NULL,
    sender_id text NOT NULL,
    body text NOT NULL,
    client_msg_id text,
    created_at timestamptz NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (conversation_id, created_at, seq)
) PARTITION BY RANGE (created_at);
CREATE INDEX IF NOT EXISTS messages_conversation_seq ON messages (conversation_id, seq);
"""


def partition_name(day: dt.date) -> str:
    return f"messages_{day:%Y%m%d}"


async def migrate(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        # Serialise concurrent bootstraps.
        await conn.execute("SELECT pg_advisory_xact_lock(4242001)")
        await conn.execute(_SCHEMA)
        await conn.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1) "
            "ON CONFLICT DO NOTHING",
            SCHEMA_VERSION,
        )


async def ensure_partitions(
    conn: asyncpg.Connection, first: dt.date, last: dt.date
) -> list[str]:
    """Create the daily partitions covering ``first`` to ``last`` inclusive."""
    created = []
    day = first
    while day <= last:
        name = partition_name(day)
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        if not exists:
            upper = day + dt.timedelta(days=1)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF messages "
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{upper.isoformat()}')"
            )
            created.append(name)
        day += dt.timedelta(days=1)
    if created:
        log.info("partitions.created", extra={"partitions": created})
    return created


async def drop_partitions_before(
    conn: asyncpg.Connection, cutoff: dt.date
) -> list[str]:
    """Drop whole days older than ``cutoff`` (retention)."""
    rows = await conn.fetch(
        """
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'messages'
        """
    )
    dropped = []
    for row in rows:
        name = row["relname"]
        try:
            day = dt.datetime.strptime(name, "messages_%Y%m%d").date()
        except ValueError:
            continue  # not one of ours; leave it alone
        if day < cutoff:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            dropped.append(name)
    if dropped:
        log.info("partitions.dropped", extra={"partitions": dropped})
    return dropped
