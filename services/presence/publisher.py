"""Publishing transitions as ``presence.changed`` events on JetStream.

Transitions are already decided (and stored) in Redis when they get here, so
a report is answered without waiting for NATS: the events queue up and one
task publishes them, retrying with back-off until JetStream acknowledges
each. The event id is fixed when the transition is queued and sent as
``Nats-Msg-Id``, so a retry after a lost acknowledgement is not stored twice.

Known shortcoming: a replica that dies between deciding a transition in Redis
and publishing it (a window of milliseconds) loses that one event. Redis, the
status endpoint and the user's next transition stay right, but peers keep
showing the old status until then. An outbox (a Redis stream the scripts
append to, read by a consumer group) would close the gap; until then the
window is only as wide as the publish queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.js.client import JetStreamContext

from libs.aio import wait_event
from libs.bus.subjects import Subjects
from libs.ids import uuid7
from libs.schema.events import PresenceChanged, PresenceData
from libs.schema.types import utc_now_ms
from services.presence.metrics import PresenceMetrics
from services.presence.store import Transition, from_millis

log = logging.getLogger("presence.publisher")
_encode = msgspec.json.Encoder().encode

BATCH = 256  # publishes in flight at once
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class _Pending:
    subject: str
    payload: bytes
    event_id: str


class TransitionPublisher:
    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        metrics: PresenceMetrics,
        *,
        timeout: float = 2.0,
        capacity: int = 100_000,
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._metrics = metrics
        self._timeout = timeout
        self._capacity = capacity
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._failing = False

    def submit(self, transitions: Iterable[Transition]) -> None:
        """Queue events for these transitions; never waits."""
        for t in transitions:
            self._metrics.transitions.labels(t.status, t.cause).inc()
            event = PresenceChanged(
                id=uuid7(),
                tenant=t.tenant,
                time=utc_now_ms(),
                data=PresenceData(
                    user_id=t.user_id,
                    status=t.status,
                    at=from_millis(t.at_ms),
                    last_seen=from_millis(t.last_seen_ms),
                ),
            )
            self._pending.append(
                _Pending(
                    self._subjects.presence_changed(t.tenant, t.user_id),
                    _encode(event),
                    event.id,
                )
            )
            log.debug(
                "presence.changed",
                extra={"tenant": t.tenant, "user": t.user_id, "status": t.status},
            )
        while len(self._pending) > self._capacity:
            self._pending.popleft()
            log.error("presence.event_dropped", extra={"why": "backlog full"})
        self._metrics.backlog.set(len(self._pending))
        self._wake.set()

    async def run(self) -> None:
        """Publish until ``close()``; then whatever is queued, once more."""
        failures = 0
        while True:
            if not self._pending:
                if self._closing.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            count = min(len(self._pending), BATCH)
            batch = [self._pending.popleft() for _ in range(count)]
            sent = await asyncio.gather(*(self._publish(p) for p in batch))
            failed = [p for p, ok in zip(batch, sent, strict=True) if not ok]
            self._pending.extendleft(reversed(failed))
            self._metrics.backlog.set(len(self._pending))
            if not failed:
                failures = 0
                continue
            if self._closing.is_set():
                log.error(
                    "presence.events_unpublished", extra={"count": len(self._pending)}
                )
                return
            failures += 1
            delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
            await wait_event(self._closing, delay)

    def close(self) -> None:
        """Let ``run`` return once the queue is empty (or a publish fails)."""
        self._closing.set()
        self._wake.set()

    async def _publish(self, pending: _Pending) -> bool:
        try:
            await self._js.publish(
                pending.subject,
                pending.payload,
                timeout=self._timeout,
                headers={"Nats-Msg-Id": pending.event_id},
            )
        except (nats.errors.Error, TimeoutError) as exc:
            self._metrics.publish_failures.inc()
            if not self._failing:
                self._failing = True
                log.error("presence.publish_failed", extra={"error": repr(exc)})
            return False
        self._metrics.published.inc()
        if self._failing:
            self._failing = False
            log.info("presence.publish_recovered")
        return True
