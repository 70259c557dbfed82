"""Store entry point.

Consumes:  MESSAGES (durable ``store``), CONVERSATIONS (durable ``store``)
Answers:   ``<p>.qry.*.>`` queries and ``<p>.store.*.conversation.project``
Writes:    PostgreSQL (the read model), partitions and retention hourly
Stops:     stops taking queries, finishes the batch in hand, closes the pool
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from libs.bus.connection import connect
from libs.bus.consumer import ConsumerMetrics, PullConsumer, decode_event
from libs.bus.responder import Responder
from libs.bus.streams import STORE, consumer_spec
from libs.bus.subjects import CONVERSATIONS_STREAM, MESSAGES_STREAM
from libs.membership import MembershipDirectory, decode_created
from libs.service import Runtime, run
from services.store import housekeeping
from services.store.barrier import ProjectionBarrier
from services.store.projector import TRANSIENT, Projector, ProjectorMetrics
from services.store.queries import Queries
from services.store.repository import Repository
from services.store.tail import StreamTail, TailTooLong

log = logging.getLogger("store")


async def serve(rt: Runtime) -> None:
    settings = rt.settings
    async with (
        asyncpg.create_pool(
            settings.database_url, min_size=2, max_size=10, command_timeout=10
        ) as pool,
        connect(settings) as nc,
    ):
        js = nc.jetstream()
        repo = Repository(pool)
        directory = MembershipDirectory(nc, rt.subjects)
        barrier = ProjectionBarrier(nc, js, repo, rt.subjects)
        metrics = ProjectorMetrics(rt.registry)
        projector = Projector(repo, pool, barrier, metrics, settings.retention_days)
        consumer_metrics = ConsumerMetrics(rt.registry)
        consumers = [
            PullConsumer(
                nc,
                js,
                stream=stream,
                durable=STORE,
                handler=handler,
                metrics=consumer_metrics,
                subjects=rt.subjects,
                max_deliver=consumer_spec(stream, STORE).max_deliver,
                batch=batch,
                decode=decode,
            )
            # Conversations are read as they were written: one created before
            # a rule was tightened is still projected (libs.membership).
            for stream, handler, batch, decode in (
                (MESSAGES_STREAM, projector.messages, 500, decode_event),
                (CONVERSATIONS_STREAM, projector.conversations, 100, decode_created),
            )
        ]
        tail = StreamTail(nc, directory, timeout=settings.request_timeout)
        queries = Queries(
            repo, directory, barrier, rt.subjects, metrics.db_seconds, tail
        )
        responder = Responder(nc, rt.registry, unavailable=(*TRANSIENT, TailTooLong))
        for endpoint, (subject, handler) in queries.endpoints().items():
            await responder.serve(subject, "store", endpoint, handler)

        async def database_up() -> bool:
            async with pool.acquire(timeout=1) as conn:
                return await conn.fetchval("SELECT 1") == 1

        rt.ready_when("nats", lambda: nc.is_connected)
        rt.ready_when("database", database_up)
        rt.ready_when("projection", lambda: projector.healthy)

        async with asyncio.TaskGroup() as tasks:
            for consumer in consumers:
                tasks.create_task(consumer.run())
                tasks.create_task(consumer.monitor())
            tasks.create_task(
                housekeeping.loop(
                    pool,
                    rt.stopping,
                    retention_days=settings.retention_days,
                    ahead_days=settings.partitions_ahead_days,
                )
            )
            await rt.stopping.wait()
            log.info("store.stopping")
            await responder.stop()
            for consumer in consumers:
                consumer.stop()


def main() -> None:
    run("store", serve)


if __name__ == "__main__":
    main()
