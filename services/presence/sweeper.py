"""Turning expired leases and ended graces into offline transitions.

Every replica sweeps; the sweep script claims what it finds, so each offline
is announced once. Between sweeps a replica sleeps until the earliest due
time Redis reported, but never longer than ``interval``, since a due time
added by another replica may come sooner than the one it knew. A due
offline is therefore announced at most ``interval`` late, usually at once.

A starting replica waits one heartbeat round (``start_after``) before its
first sweep. After every replica was down for longer than the TTL, all
leases in Redis have run out; the gateways' next heartbeats renew those of
live sockets, and only what is still expired after them goes offline, rather
than every user flapping offline and back.
"""

from __future__ import annotations

import asyncio
import logging

from libs.aio import wait_event
from services.presence.metrics import PresenceMetrics
from services.presence.publisher import TransitionPublisher
from services.presence.store import UNAVAILABLE, PresenceStore

log = logging.getLogger("presence.sweeper")

INTERVAL = 0.25  # seconds between sweeps at most
LIMIT = 500  # leases and graces claimed per sweep
RETRY = 1.0  # seconds between sweeps while Redis is down
_LATE = 0.005  # wake just after a due time rather than just before it


class Sweeper:
    def __init__(
        self,
        store: PresenceStore,
        publisher: TransitionPublisher,
        metrics: PresenceMetrics,
        *,
        start_after: float,
        interval: float = INTERVAL,
        limit: int = LIMIT,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._metrics = metrics
        self._interval = interval
        self._limit = limit
        self._start_after = start_after
        self.healthy = True

    async def run(self, stopping: asyncio.Event) -> None:
        await wait_event(stopping, self._start_after)
        while not stopping.is_set():
            try:
                sweep = await self._store.sweep(self._limit)
            except UNAVAILABLE as exc:
                if self.healthy:
                    log.error("presence.sweep_failed", extra={"error": repr(exc)})
                self.healthy = False
                await wait_event(stopping, RETRY)
                continue
            if not self.healthy:
                log.info("presence.sweep_recovered")
                self.healthy = True
            self._record(sweep.expired, sweep.leases, sweep.pending)
            for t in sweep.transitions:
                self._metrics.sweep_lag.observe(max(0, sweep.now_ms - t.at_ms) / 1000)
            self._publisher.submit(sweep.transitions)
            if max(sweep.expired, sweep.ended) >= self._limit:
                continue  # more are due already
            delay = self._interval
            if sweep.next_due_ms is not None:
                until_due = (sweep.next_due_ms - sweep.now_ms) / 1000 + _LATE
                delay = min(delay, max(until_due, 0.0))
            await wait_event(stopping, delay)

    def _record(self, expired: int, leases: int, pending: int) -> None:
        self._metrics.sweeps.inc()
        self._metrics.expired.inc(expired)
        self._metrics.leases.set(leases)
        self._metrics.pending.set(pending)
