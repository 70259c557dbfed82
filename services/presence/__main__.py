"""Presence entry point.

Answers:   ``<p>.presence.*.report`` (gateways' socket connects, heartbeats
           and disconnects) and ``<p>.presence.*.query`` (users' status)
Keeps:     a lease per socket in Redis; sweeps expired leases and ended
           graces on every replica, each claimed by exactly one
Publishes: ``presence.changed`` (PRESENCE stream) on each online/offline
           transition, with ``Nats-Msg-Id``
Stops:     stops taking requests and sweeping, publishes what is decided,
           closes Redis, drains NATS
"""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from libs.bus.connection import connect
from libs.bus.responder import Responder
from libs.service import Runtime, run
from services.presence.handlers import PresenceHandlers
from services.presence.metrics import PresenceMetrics
from services.presence.publisher import TransitionPublisher
from services.presence.store import UNAVAILABLE, PresenceStore
from services.presence.sweeper import Sweeper

REDIS_CONNECTIONS = 32


async def serve(rt: Runtime) -> None:
    settings = rt.settings
    # Bounded: a burst of reports waits for a connection (up to its timeout)
    # rather than opening one per request in flight.
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        timeout=2,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    async with redis.Redis.from_pool(pool) as client, connect(settings) as nc:
        metrics = PresenceMetrics(rt.registry)
        store = PresenceStore(
            client, ttl=settings.presence_ttl, grace=settings.presence_grace
        )
        publisher = TransitionPublisher(nc.jetstream(), rt.subjects, metrics)
        # One heartbeat round, plus room for the gateways' report batching.
        first_sweep = settings.presence_heartbeat + 1.0
        sweeper = Sweeper(store, publisher, metrics, start_after=first_sweep)
        handlers = PresenceHandlers(store, publisher, metrics)
        responder = Responder(nc, rt.registry, unavailable=UNAVAILABLE)
        await responder.serve(
            rt.subjects.presence_report("*"),
            "presence",
            "presence.report",
            handlers.report,
        )
        await responder.serve(
            rt.subjects.presence_query("*"),
            "presence",
            "presence.query",
            handlers.query,
        )
        rt.ready_when("nats", lambda: nc.is_connected)
        rt.ready_when("redis", store.ping)
        async with asyncio.TaskGroup() as tasks:
            publishing = tasks.create_task(publisher.run())
            sweeping = tasks.create_task(sweeper.run(rt.stopping))
            await rt.stopping.wait()
            await responder.stop()
            await sweeping
            publisher.close()
            await publishing


def main() -> None:
    run("presence", serve)


if __name__ == "__main__":
    main()
