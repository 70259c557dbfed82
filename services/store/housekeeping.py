"""Partitions ahead of need, and retention, run by one store replica at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg

from libs.aio import wait_event
from services.store import schema

log = logging.getLogger("store.housekeeping")

_LOCK_KEY = 4242002  # pg advisory lock: one replica runs housekeeping at a time
_DELETE_BATCH = 10_000


async def run_once(
    pool: asyncpg.Pool,
    *,
    retention_days: int,
    ahead_days: int,
    today: dt.date | None = None,
) -> dict[str, object]:
    """Create upcoming partitions and drop expired data; returns what it did."""
    today = today or dt.datetime.now(dt.UTC).date()
    cutoff = today - dt.timedelta(days=retention_days)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return {"skipped": "another replica holds the housekeeping lock"}
        try:
            created = await schema.ensure_partitions(
                conn,
                today - dt.timedelta(days=1),
                today + dt.timedelta(days=ahead_days),
            )
            dropped = await schema.drop_partitions_before(conn, cutoff)
            forgotten = 0
            while True:
                status = await conn.execute(
                    """
                    DELETE FROM message_ids WHERE id IN (
                        SELECT id FROM message_ids WHERE created_at < $1 LIMIT $2)
                    """,
                    dt.datetime.combine(cutoff, dt.time(), tzinfo=dt.UTC),
                    _DELETE_BATCH,
                )
                count = int(status.split()[-1])
                forgotten += count
                if count < _DELETE_BATCH:
                    break
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return {
        "partitions_created": created,
        "partitions_dropped": dropped,
        "ids_forgotten": forgotten,
    }


async def loop(
    pool: asyncpg.Pool,
    stopping: asyncio.Event,
    *,
    retention_days: int,
    ahead_days: int,
    interval: float = 3600.0,
) -> None:
    while not stopping.is_set():
        try:
            result = await run_once(
                pool, retention_days=retention_days, ahead_days=ahead_days
            )
            log.info("housekeeping.done", extra=result)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("housekeeping.failed", extra={"error": repr(exc)})
        await wait_event(stopping, interval)
