"""Projects the MESSAGES and CONVERSATIONS streams into PostgreSQL.

Each batch of events becomes one transaction; the events are acknowledged
only after it commits. A database that is down or overloaded retries the
whole batch with back-off. An event whose content the database refuses (a
NUL in a text, say) is dead-lettered at once with the reason: retrying
cannot change its content. When a batch is refused, its events are written
one by one, so the refused one holds back none of the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence

import asyncpg
from prometheus_client import CollectorRegistry, Histogram

from libs.bus.consumer import Delivery, Outcome
from libs.schema.events import ConversationCreated, MessageAccepted
from libs.telemetry.metrics import LATENCY_BUCKETS
from services.store import schema
from services.store.barrier import ProjectionBarrier
from services.store.repository import NewMessage, Repository

log = logging.getLogger("store.projector")

# Failures worth retrying: the database went away or is overloaded. Anything
# else that is not about the content (a bug) is also retried by the
# consumer, then dead-lettered.
TRANSIENT = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.TooManyConnectionsError,
    TimeoutError,
)
# The database refuses what an event holds (class 22: data exceptions; class
# 23: integrity constraints); the same event will always be refused.
REFUSED = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)


def _refusal(exc: Exception) -> str:
    return f"PostgreSQL refused the event: {type(exc).__name__}: {exc}"


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.db_seconds = Histogram(
            "messaging_db_query_duration_seconds",
            "PostgreSQL statement latency, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class Projector:
    def __init__(
        self,
        repo: Repository,
        pool: asyncpg.Pool,
        barrier: ProjectionBarrier,
        metrics: ProjectorMetrics,
        retention_days: int,
    ) -> None:
        self._repo = repo
        self._pool = pool
        self._barrier = barrier
        self._metrics = metrics
        self._retention = dt.timedelta(days=retention_days)
        self.healthy = True

    async def messages(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        outcomes = [Outcome.ACK] * len(deliveries)
        batch: list[tuple[Delivery, NewMessage]] = []
        cutoff = dt.datetime.now(dt.UTC) - self._retention
        for i, d in enumerate(deliveries):
            event = d.event
            if not isinstance(event, MessageAccepted):
                d.reason = f"unexpected event type {type(event).__name__}"
                outcomes[i] = Outcome.DEAD
            elif event.data.created_at < cutoff:
                # Replaying history older than retention: it would be
                # dropped by housekeeping anyway.
                continue
            else:
                item = NewMessage(event.tenant, d.stream_seq, event.data)
                batch.append((d, item))
        if not batch:
            return outcomes
        try:
            await self._insert([item for _, item in batch])
        except TRANSIENT as exc:
            self.healthy = False
            log.error(
                "db.write_failed", extra={"error": repr(exc), "events": len(batch)}
            )
            return [Outcome.RETRY if o is Outcome.ACK else o for o in outcomes]
        except REFUSED as exc:
            self.healthy = True
            log.warning(
                "db.batch_refused",
                extra={"error": repr(exc), "events": len(batch)},
            )
            settled = await self._one_by_one(batch)
            pairs = zip(deliveries, outcomes, strict=True)
            return [settled.get(id(d), outcome) for d, outcome in pairs]
        self.healthy = True
        for _, item in batch:
            self._barrier.committed(item.message.conversation_id, item.seq)
        return outcomes

    async def _one_by_one(
        self, batch: list[tuple[Delivery, NewMessage]]
    ) -> dict[int, Outcome]:
        """Write each event of a refused batch alone: outcomes by delivery."""
        settled: dict[int, Outcome] = {}
        for d, item in batch:
            try:
                await self._insert([item])
            except TRANSIENT as exc:
                self.healthy = False
                log.error("db.write_failed", extra={"error": repr(exc), "events": 1})
                settled[id(d)] = Outcome.RETRY
                continue
            except REFUSED as exc:
                d.reason = _refusal(exc)
                settled[id(d)] = Outcome.DEAD
                self._refused(item.tenant, item.message.conversation_id, d, exc)
            else:
                settled[id(d)] = Outcome.ACK
            # Settled for good either way: no read should wait for it.
            self._barrier.committed(item.message.conversation_id, item.seq)
        return settled

    def _refused(
        self, tenant: str, conversation_id: str, d: Delivery, exc: Exception
    ) -> None:
        log.error(
            "event.refused_by_database",
            extra={
                "tenant": tenant,
                "conversation": conversation_id,
                "seq": d.stream_seq,
                "error": repr(exc),
            },
        )

    async def _insert(self, batch: list[NewMessage]) -> None:
        started = time.perf_counter()
        try:
            await self._repo.insert_messages(batch)
        except asyncpg.exceptions.CheckViolationError as exc:
            if "no partition" not in str(exc):
                raise
            # An event for a day with no partition yet (clock skew, replay):
            # create the days it needs and write again.
            days = {item.message.created_at.date() for item in batch}
            async with self._pool.acquire() as conn:
                await schema.ensure_partitions(conn, min(days), max(days))
            await self._repo.insert_messages(batch)
        self._metrics.db_seconds.labels("insert_messages").observe(
            time.perf_counter() - started
        )

    async def conversations(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        outcomes = []
        for d in deliveries:
            event = d.event
            if not isinstance(event, ConversationCreated):
                d.reason = f"unexpected event type {type(event).__name__}"
                outcomes.append(Outcome.DEAD)
                continue
            try:
                await self._repo.insert_conversation(event.tenant, event.data)
            except TRANSIENT as exc:
                self.healthy = False
                log.error("db.write_failed", extra={"error": repr(exc)})
                outcomes.append(Outcome.RETRY)
                continue
            except REFUSED as exc:
                d.reason = _refusal(exc)
                self._refused(event.tenant, event.data.id, d, exc)
                outcomes.append(Outcome.DEAD)
                continue
            self.healthy = True
            outcomes.append(Outcome.ACK)
        return outcomes
