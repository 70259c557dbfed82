"""Answering requests on the bus, many at a time, and stopping cleanly.

The NATS client runs one subscription's callback at a time, so a handler that
awaits anything would serialise every request behind it. The responder starts
each request as its own task, bounded by a semaphore, and on shutdown stops
taking requests first and then waits for those in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram

from libs.telemetry import tracing
from libs.telemetry.metrics import LATENCY_BUCKETS

Handler = Callable[[Msg], Awaitable[bytes]]

log = logging.getLogger("bus.responder")
_tracer = tracing.tracer("messaging.bus")
_INTERNAL = msgspec.json.encode(
    {"error": {"code": "internal", "message": "internal error"}}
)
_TOO_LARGE = msgspec.json.encode(
    {"error": {"code": "internal", "message": "the answer was too large to send"}}
)
# retry_after: the gateway turns it into the Retry-After header of its 503.
_UNAVAILABLE = msgspec.json.encode(
    {
        "error": {
            "code": "unavailable",
            "message": "a dependency is down; retry later",
            "retry_after": 1,
        }
    }
)


class ResponderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "messaging_bus_requests_total",
            "Requests answered over the bus, by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "messaging_bus_request_duration_seconds",
            "Time to answer a bus request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class Responder:
    def __init__(
        self,
        nc: Client,
        registry: CollectorRegistry,
        *,
        max_in_flight: int = 512,
        unavailable: tuple[type[BaseException], ...] = (),
    ) -> None:
        """``unavailable``: exceptions meaning a dependency is down (answered
        as ``unavailable``, which the caller may retry), not a bug."""
        self._nc = nc
        self._unavailable = unavailable
        self._metrics = ResponderMetrics(registry)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(
        self, subject: str, queue: str, endpoint: str, handler: Handler
    ) -> None:
        """Answer ``subject`` (one member of ``queue`` answers each request)."""

        async def dispatch(msg: Msg) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._answer(msg, endpoint, handler))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

        sub = await self._nc.subscribe(subject, queue=queue, cb=dispatch)
        self._subs.append(sub)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, msg: Msg, endpoint: str, handler: Handler) -> None:
        started = time.perf_counter()
        with tracing.span(
            _tracer, endpoint, parent=msg.headers, kind=trace.SpanKind.SERVER
        ) as span:
            try:
                reply = await handler(msg)
                outcome = "ok"
            except asyncio.CancelledError:
                raise
            except self._unavailable as exc:
                log.error(
                    "request.dependency_down",
                    extra={"endpoint": endpoint, "error": repr(exc)},
                )
                span.record_exception(exc)
                reply, outcome = _UNAVAILABLE, "unavailable"
            except Exception as exc:
                # Our bug, not the caller's: answer a generic error so the
                # caller is not left waiting for its timeout.
                log.exception("request.failed", extra={"endpoint": endpoint})
                span.record_exception(exc)
                reply, outcome = _INTERNAL, "error"
            if len(reply) > self._nc.max_payload:
                # Our bug: every reply is meant to fit (pages are cut by
                # size). The server would refuse it and leave the caller to
                # time out; answer at once instead.
                log.error(
                    "request.reply_too_large",
                    extra={
                        "endpoint": endpoint,
                        "bytes": len(reply),
                        "max_payload": self._nc.max_payload,
                    },
                )
                reply, outcome = _TOO_LARGE, "error"
        if msg.reply:
            try:
                await msg.respond(reply)
            except nats.errors.Error as exc:  # connection lost while answering
                log.warning(
                    "request.reply_failed",
                    extra={"endpoint": endpoint, "error": repr(exc)},
                )
                outcome = "reply_failed"
        self._metrics.handled.labels(endpoint, outcome).inc()
        self._metrics.duration.labels(endpoint).observe(time.perf_counter() - started)

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop taking requests, then wait for in-flight ones up to ``deadline``."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:  # connection already closed
                log.debug("unsubscribe failed", extra={"error": repr(exc)})
        self._subs.clear()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "responder.cancelled_in_flight", extra={"count": len(pending)}
                )
