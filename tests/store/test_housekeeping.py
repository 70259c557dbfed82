"""Daily partitions are made ahead of need; old ones go with retention."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import nats

from libs import ids
from services.store import housekeeping, schema
from tests.support import Client, accepted_event, publish_accepted, unique


async def _partitions(db: asyncpg.Pool) -> set[str]:
    rows = await db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'messages'"
    )
    return {r["relname"] for r in rows}


async def test_partitions_ahead_and_retention(db: asyncpg.Pool) -> None:
    today = dt.datetime.now(dt.UTC).date()
    old_day = today - dt.timedelta(days=400)
    async with db.acquire() as conn:
        await schema.ensure_partitions(conn, old_day, old_day)
        await conn.execute(
            "INSERT INTO message_ids (id, tenant_id, conversation_id, created_at, seq) "
            "VALUES ($1, 't', 'c', $2, 1)",
            ids.uuid7(),
            dt.datetime.combine(old_day, dt.time(12), tzinfo=dt.UTC),
        )

    result = await housekeeping.run_once(db, retention_days=365, ahead_days=10)

    names = await _partitions(db)
    for offset in range(-1, 11):
        assert schema.partition_name(today + dt.timedelta(days=offset)) in names
    assert schema.partition_name(old_day) not in names
    assert schema.partition_name(old_day) in result["partitions_dropped"]
    assert result["ids_forgotten"] >= 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM message_ids WHERE created_at < $1",
            dt.datetime.combine(
                old_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC
            ),
        )
        == 0
    )


async def test_an_event_for_a_day_without_partition_is_still_stored(
    client: Client, nc: nats.NATS, db: asyncpg.Pool
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    # Far enough ahead that no partition exists yet (clock skew, replays).
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=60)
    event = accepted_event(tenant, conv["id"], "from the future", at=at)
    message_id = event.id
    assert schema.partition_name(at.date()) not in await _partitions(db)

    await publish_accepted(nc, event)

    for _ in range(100):
        listed = await client.list_messages(tenant, "bob", conv["id"])
        if listed.body["messages"]:
            break
        await asyncio.sleep(0.1)
    assert [m["id"] for m in listed.body["messages"]] == [message_id]
    assert schema.partition_name(at.date()) in await _partitions(db)
