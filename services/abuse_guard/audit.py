"""``message.rejected`` events on the AUDIT stream, off the verdict's path.

A refused send is answered at once; its event waits in a bounded queue for
a few publishing workers. Each event keeps its id (its ``Nats-Msg-Id``)
across attempts, so a retried publish is never stored twice. An event that
cannot be published, or finds the queue full, is counted and logged at
ERROR with its facts, never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.js.client import JetStreamContext

from libs import ids
from libs.bus.codec import encode
from libs.bus.subjects import AUDIT_STREAM, Subjects
from libs.schema.api import AbuseCheck
from libs.schema.events import MessageRejected, Rejection
from libs.schema.types import utc_now_ms
from libs.telemetry import tracing
from services.abuse_guard.decision import Decision
from services.abuse_guard.metrics import AbuseMetrics

log = logging.getLogger("abuse_guard.audit")

PUBLISH_FAILURES = (nats.errors.Error, TimeoutError)
_Pending = tuple[MessageRejected, dict[str, str]]
ATTEMPTS = 3
RETRY_DELAY = 0.5  # seconds between attempts


def rejection_event(request: AbuseCheck, decision: Decision) -> MessageRejected:
    assert decision.verdict in ("rate_limited", "duplicate")
    return MessageRejected(
        id=ids.uuid7(),
        tenant=request.tenant,
        time=utc_now_ms(),
        data=Rejection(
            conversation_id=request.conversation_id,
            sender_id=request.sender_id,
            reason=decision.verdict,
            # Shortcoming: an unkeyed SHA-256 of the normalised body, so a
            # reader of the audit stream can confirm a guessed short text;
            # a keyed hash (a per-deployment secret) would prevent that.
            body_sha256=request.body_fingerprint,
            client_msg_id=request.client_msg_id,
            original_id=decision.original_id,
        ),
    )


class AuditTrail:
    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        metrics: AbuseMetrics,
        *,
        capacity: int = 10_000,
        workers: int = 4,
        timeout: float = 2.0,
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._metrics = metrics
        self._timeout = timeout
        self._worker_count = workers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(capacity)
        self._workers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> AuditTrail:
        self._workers = [
            asyncio.create_task(self._work(), name=f"audit-{i}")
            for i in range(self._worker_count)
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def record(self, event: MessageRejected) -> None:
        # The headers are taken now, inside the check's span, so the event
        # joins the trace of the send it refused.
        headers = tracing.inject({"Nats-Msg-Id": event.id})
        try:
            self._queue.put_nowait((event, dict(headers)))
        except asyncio.QueueFull:
            self._lost(event, "audit queue full")

    async def close(self, deadline: float = 5.0) -> None:
        """Publish what is queued, up to ``deadline`` seconds; then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), deadline)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self._queue.empty():
            self._lost(self._queue.get_nowait()[0], "shutting down")

    async def _work(self) -> None:
        while True:
            event, headers = await self._queue.get()
            try:
                await self._publish(event, headers)
            finally:
                self._queue.task_done()

    async def _publish(self, event: MessageRejected, headers: dict[str, str]) -> None:
        subject = self._subjects.message_rejected(
            event.tenant, event.data.conversation_id
        )
        payload = encode(event)
        error: BaseException | None = None
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(RETRY_DELAY)
            try:
                await self._js.publish(
                    subject,
                    payload,
                    timeout=self._timeout,
                    stream=AUDIT_STREAM,
                    headers=headers,
                )
            except PUBLISH_FAILURES as exc:
                error = exc
            else:
                return
        self._lost(event, repr(error))

    def _lost(self, event: MessageRejected, error: str) -> None:
        self._metrics.audit_failures.inc()
        log.error(
            "audit.publish_failed",
            extra={
                "tenant": event.tenant,
                "conversation": event.data.conversation_id,
                "sender": event.data.sender_id,
                "reason": event.data.reason,
                "event_id": event.id,
                "error": error,
            },
        )
