"""``msgctl bootstrap``: streams, consumers, schema and partitions, explicitly.

Safe to run any number of times; it brings existing objects up to date.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

import asyncpg

from libs.bus import streams
from libs.bus.connection import connect
from libs.bus.subjects import Subjects
from libs.config import Settings
from services.store import schema

log = logging.getLogger("bootstrap")


async def bootstrap(env: Mapping[str, str] | None = None) -> None:
    settings = Settings.from_env("bootstrap", env)
    async with connect(settings) as nc:
        await streams.bootstrap(
            nc.jetstream(),
            Subjects(settings.subject_prefix),
            retention_days=settings.retention_days,
            duplicate_window=settings.duplicate_window,
            fanout_partitions=settings.fanout_partitions,
        )
    conn = await asyncpg.connect(settings.database_url)
    try:
        await schema.migrate(conn)
        today = dt.datetime.now(dt.UTC).date()
        await schema.ensure_partitions(
            conn,
            today - dt.timedelta(days=1),
            today + dt.timedelta(days=settings.partitions_ahead_days),
        )
    finally:
        await conn.close()
    log.info("bootstrap.done")
