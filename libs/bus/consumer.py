"""A JetStream pull consumer that hands events to a handler in batches.

One pull request is kept open at a time: the server pushes up to ``batch``
events into our inbox as they arrive, so an idle stream costs one heartbeat
every few seconds and a busy one is handled in natural batches (whatever
arrived while the previous batch was being handled). nats-py's ``fetch()`` is
not used because it holds a lone message until its whole batch fills or the
timeout passes, which would add that timeout to delivery latency.

The handler decides each event's fate by returning one ``Outcome`` per event:
acknowledged, retried later with back-off, or dead-lettered. An event that
still fails on its last allowed delivery is dead-lettered, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from libs.aio import wait_event
from libs.bus.subjects import Subjects
from libs.schema.events import Event
from libs.telemetry import tracing
from libs.telemetry.metrics import LATENCY_BUCKETS

log = logging.getLogger("bus.consumer")
_tracer = tracing.tracer("messaging.bus")
# Events by today's rules; one that breaks them is dead-lettered.
decode_event = msgspec.json.Decoder(Event).decode

HEARTBEAT = 1.0  # seconds between idle heartbeats from the server
EXPIRES = 10.0  # seconds a pull request stays open
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Outcome(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(slots=True)
class Delivery:
    msg: Msg
    stream_seq: int
    delivered: int
    event: Event | None = None
    error: str | None = None
    reason: str = field(default="")
    # This event's consumer span, for the handler to pass on in the headers
    # of what it publishes (the trace of a send continues through fanout).
    trace_context: otel_context.Context | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.msg.headers or {}


BatchHandler = Callable[[Sequence[Delivery]], Awaitable[Sequence[Outcome]]]
# Raw event -> event, raising msgspec.DecodeError for one it cannot read.
EventDecoder = Callable[[bytes], Event]


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "messaging_consumer_events_total",
            "Events handled by a durable consumer, by outcome.",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "messaging_consumer_redeliveries_total",
            "Events received again after a failed or unacknowledged delivery.",
            ["consumer"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "messaging_consumer_dead_letters_total",
            "Events moved to the dead-letter stream.",
            ["consumer"],
            registry=registry,
        )
        self.pending = Gauge(
            "messaging_consumer_pending",
            "Events in the stream not yet delivered to the consumer (lag).",
            ["consumer"],
            registry=registry,
        )
        self.ack_pending = Gauge(
            "messaging_consumer_ack_pending",
            "Events delivered to the consumer and not yet acknowledged.",
            ["consumer"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "messaging_consumer_batch_duration_seconds",
            "Time to handle one batch of events.",
            ["consumer"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "messaging_consumer_batch_size",
            "Events per handled batch.",
            ["consumer"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )


class PullConsumer:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        handler: BatchHandler,
        metrics: ConsumerMetrics,
        subjects: Subjects,
        max_deliver: int,
        batch: int = 256,
        decode: EventDecoder = decode_event,
    ) -> None:
        """``decode``: how events are read (``DecodeError``: dead-lettered)."""
        self._decode = decode
        self._nc = nc
        self._js = js
        self._stream = stream
        self._durable = durable
        self._handler = handler
        self._metrics = metrics
        self._subjects = subjects
        self._max_deliver = max_deliver
        self._batch = batch
        self._label = f"{stream.lower()}.{durable}"
        # Show every series of this consumer from the start, at 0, so that
        # rates and alerts over them exist before the first redelivery.
        for outcome in Outcome:
            metrics.events.labels(self._label, outcome.value)
        metrics.redeliveries.labels(self._label)
        metrics.dead_letters.labels(self._label)
        self._inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self.last_batch_at = time.monotonic()

    @property
    def name(self) -> str:
        return self._label

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run``."""
        self._stopping.set()

    async def run(self) -> None:
        await self._js.consumer_info(self._stream, self._durable)  # bound, or raise
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, cb=self._received)
        log.info("consumer.started", extra={"consumer": self._label})
        owed = 0
        try:
            while not self._stopping.is_set():
                if owed <= 0:
                    await self._pull(inbox)
                    owed = self._batch
                first = await self._next(HEARTBEAT * 3)
                if first is None:
                    owed = 0  # no heartbeat: the request was lost, ask again
                    continue
                deliveries, ended = self._collect(first)
                owed -= len(deliveries)
                if ended:
                    owed = 0
                if deliveries:
                    await self._handle(deliveries)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            log.info("consumer.stopped", extra={"consumer": self._label})

    async def _received(self, msg: Msg) -> None:
        self._inbox.put_nowait(msg)

    async def _pull(self, inbox: str) -> None:
        request = {
            "batch": self._batch,
            "expires": int(EXPIRES * 1e9),
            "idle_heartbeat": int(HEARTBEAT * 1e9),
        }
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._durable}"
        await self._nc.publish(subject, msgspec.json.encode(request), reply=inbox)

    async def _next(self, timeout: float) -> Msg | None:
        stop = asyncio.ensure_future(self._stopping.wait())
        get = asyncio.ensure_future(self._inbox.get())
        try:
            done, _ = await asyncio.wait(
                {stop, get}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if get in done:
            return get.result()
        get.cancel()
        return None

    def _collect(self, first: Msg) -> tuple[list[Delivery], bool]:
        """Everything already received, split into events and request status."""
        deliveries: list[Delivery] = []
        ended = False
        msg: Msg | None = first
        while msg is not None:
            status = msg.headers.get("Status") if msg.headers and not msg.data else None
            if status is None:
                deliveries.append(self._delivery(msg))
            elif status != "100":  # 404/408: request over; 409: consumer changed
                ended = True
                if status == "409":
                    log.warning(
                        "consumer.pull_refused",
                        extra={
                            "consumer": self._label,
                            "description": msg.headers.get("Description", ""),
                        },
                    )
            if len(deliveries) >= self._batch or self._inbox.empty():
                break
            msg = self._inbox.get_nowait()
        return deliveries, ended

    def _delivery(self, msg: Msg) -> Delivery:
        meta = msg.metadata
        delivery = Delivery(
            msg=msg, stream_seq=meta.sequence.stream, delivered=meta.num_delivered
        )
        try:
            delivery.event = self._decode(msg.data)
        except msgspec.DecodeError as exc:
            delivery.error = str(exc)
        return delivery

    async def _handle(self, deliveries: list[Delivery]) -> None:
        started = time.perf_counter()
        spans = [self._span(d) for d in deliveries]
        for d, span in zip(deliveries, spans, strict=True):
            d.trace_context = trace.set_span_in_context(span)
        for d in deliveries:
            if d.delivered > 1:
                self._metrics.redeliveries.labels(self._label).inc()
                log.warning(
                    "event.redelivered",
                    extra={
                        "consumer": self._label,
                        "seq": d.stream_seq,
                        "delivered": d.delivered,
                    },
                )
        good = [d for d in deliveries if d.event is not None]
        outcomes: dict[int, Outcome] = {
            id(d): Outcome.DEAD for d in deliveries if d.event is None
        }
        if good:
            try:
                results = await self._handler(good)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug or an unexpected dependency failure: retry the batch
                # with back-off rather than lose it.
                log.exception("consumer.batch_failed", extra={"consumer": self._label})
                results = [Outcome.RETRY] * len(good)
            for d, outcome in zip(good, results, strict=True):
                outcomes[id(d)] = outcome
        for d in deliveries:
            await self._settle(d, outcomes[id(d)])
        for span in spans:
            span.end()
        self.last_batch_at = time.monotonic()
        self._metrics.batch_seconds.labels(self._label).observe(
            time.perf_counter() - started
        )
        self._metrics.batch_size.labels(self._label).observe(len(deliveries))

    def _span(self, d: Delivery) -> trace.Span:
        attributes: dict[str, str | int] = {
            "messaging.consumer": self._label,
            "messaging.stream_seq": d.stream_seq,
            "messaging.delivered": d.delivered,
        }
        if d.event is not None:
            attributes["messaging.message.id"] = d.event.id
        return tracing.detached_span(
            _tracer,
            f"{self._durable} process",
            parent=d.msg.headers,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )

    async def _settle(self, d: Delivery, outcome: Outcome) -> None:
        if outcome is Outcome.RETRY and d.delivered >= self._max_deliver:
            outcome = Outcome.DEAD
            d.reason = d.reason or "redeliveries exhausted"
        self._metrics.events.labels(self._label, outcome.value).inc()
        if outcome is Outcome.ACK:
            await d.msg.ack()
        elif outcome is Outcome.RETRY:
            delay = RETRY_DELAYS[min(d.delivered, len(RETRY_DELAYS)) - 1]
            await d.msg.nak(delay=delay)
        else:
            await self._dead_letter(d)

    async def _dead_letter(self, d: Delivery) -> None:
        reason = d.error or d.reason or "rejected by handler"
        # An event we could not decode still came on a subject that names
        # its tenant; the dead letter stays under that tenant's subjects.
        tenant = (
            d.event.tenant if d.event is not None else Subjects.tenant_of(d.msg.subject)
        )
        headers = {
            "Nats-Msg-Id": f"{self._stream}:{d.stream_seq}:{self._durable}",
            "Msg-Dead-Reason": reason[:500],
            "Msg-Origin-Stream": self._stream,
            "Msg-Origin-Seq": str(d.stream_seq),
            "Msg-Origin-Subject": d.msg.subject,
        }
        try:
            await self._js.publish(
                self._subjects.dead_letter(self._durable, tenant),
                d.msg.data,
                headers=headers,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            # Could not park it: leave it to be redelivered rather than lose it.
            log.error(
                "event.dead_letter_failed",
                extra={
                    "consumer": self._label,
                    "seq": d.stream_seq,
                    "error": repr(exc),
                },
            )
            await d.msg.nak(delay=RETRY_DELAYS[-1])
            return
        await d.msg.term()
        self._metrics.dead_letters.labels(self._label).inc()
        log.error(
            "event.dead_lettered",
            extra={"consumer": self._label, "seq": d.stream_seq, "reason": reason},
        )

    async def monitor(self, interval: float = 5.0) -> None:
        """Refresh the lag gauges from the server until stopped."""
        while not self._stopping.is_set():
            try:
                info = await self._js.consumer_info(self._stream, self._durable)
                self._metrics.pending.labels(self._label).set(info.num_pending or 0)
                self._metrics.ack_pending.labels(self._label).set(
                    info.num_ack_pending or 0
                )
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning(
                    "consumer.info_failed",
                    extra={"consumer": self._label, "error": repr(exc)},
                )
            await wait_event(self._stopping, interval)
