"""Abuse guard entry point.

Answers:   ``<p>.abuse.*.check`` (may this send go out?) and
           ``<p>.abuse.*.release`` (forget an allowed send that failed),
           queue group ``abuse-guard``
Publishes: ``message.rejected`` (AUDIT) for every refused send, in the
           background, with ``Nats-Msg-Id``
Reads:     Redis: send logs, duplicate and idempotency markers, and the
           per-tenant and per-user limits (``msgctl limits``); while Redis
           is unreachable, answers from memory (see ``guard.py``)
Stops:     stops taking requests, answers those in flight, publishes the
           queued audit events (up to a deadline), closes Redis, drains NATS
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from libs.bus.connection import connect
from libs.bus.responder import Responder
from libs.config import ConfigError, Settings
from libs.service import Runtime, run
from services.abuse_guard import redis_guard
from services.abuse_guard.audit import AuditTrail
from services.abuse_guard.decision import Policy
from services.abuse_guard.guard import AbuseGuard
from services.abuse_guard.handlers import AbuseHandlers
from services.abuse_guard.local_guard import LocalGuard
from services.abuse_guard.metrics import AbuseMetrics

QUEUE = "abuse-guard"


def default_policy(settings: Settings) -> Policy:
    if settings.rate_limit < 1 or settings.rate_window < 1:
        raise ConfigError("MSG_RATE_LIMIT and MSG_RATE_WINDOW must be at least 1")
    if settings.duplicate_suppression_window < 0:
        raise ConfigError("MSG_DUPLICATE_SUPPRESSION_WINDOW must not be negative")
    return Policy(
        limit=settings.rate_limit,
        window=settings.rate_window,
        duplicate_window=settings.duplicate_suppression_window,
    )


async def serve(rt: Runtime) -> None:
    defaults = default_policy(rt.settings)
    metrics = AbuseMetrics(rt.registry)
    client = redis_guard.connect(rt.settings.redis_url)
    try:
        async with connect(rt.settings) as nc:
            store = redis_guard.RedisGuard(client, defaults)
            guard = AbuseGuard(store, LocalGuard(), defaults, metrics)
            await guard.start()
            watching = asyncio.create_task(guard.watch(rt.stopping))
            async with (
                _stopped_with(watching),
                AuditTrail(nc.jetstream(), rt.subjects, metrics) as audit,
            ):
                handlers = AbuseHandlers(guard, audit, metrics)
                responder = Responder(nc, rt.registry)
                await responder.serve(
                    rt.subjects.abuse_check("*"), QUEUE, "abuse.check", handlers.check
                )
                await responder.serve(
                    rt.subjects.abuse_release("*"),
                    QUEUE,
                    "abuse.release",
                    handlers.release,
                )
                # Redis is not a readiness condition: without it, checks are
                # still answered (degraded), which is the point.
                rt.ready_when("nats", lambda: nc.is_connected)
                await rt.stopping.wait()
                await responder.stop()
    finally:
        with contextlib.suppress(*redis_guard.REDIS_DOWN):
            await client.aclose()


@contextlib.asynccontextmanager
async def _stopped_with(task: asyncio.Task[None]) -> AsyncIterator[None]:
    """Cancel ``task`` when the block exits, however it exits."""
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    run("abuse-guard", serve)


if __name__ == "__main__":
    main()
