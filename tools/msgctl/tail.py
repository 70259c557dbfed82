"""``msgctl tail``: follow one tenant's events as an integrator would.

One consumer per event stream (MESSAGES, CONVERSATIONS, AUDIT, PRESENCE),
each filtered to ``<p>.evt.<tenant>.>`` and named after the NATS user, which
is all an integrator's permissions allow (``libs.bus.permissions``). The
consumers are ephemeral: acknowledgement-free, in memory, deleted on exit and
dropped by the server a minute after a crash.

Streams are merged sensibly: the history asked for with ``--since`` is
printed in time order across streams (a stream's next event is awaited
while it still has history to deliver), and live events as they arrive.
Each line is ``{"stream", "seq", "subject", "event"}`` with the event exactly
as published; ``seq`` is the position in ``stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import secrets
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from libs.bus import catalogue
from libs.bus.permissions import ADMIN
from libs.bus.subjects import MESSAGES_STREAM

log = logging.getLogger("msgctl.tail")

BATCH = 256
EXPIRES = 5.0  # seconds a pull request stays open
HEARTBEAT = 1.0  # idle heartbeat from the server while a pull is open
STALL = 10.0  # history still owed but nothing heard: stop waiting for it
API_TIMEOUT = 2.0  # seconds for JetStream API answers
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_encode = msgspec.json.Encoder().encode


class TailError(Exception):
    """Bad arguments, or the server refused to make a consumer."""


@dataclass(frozen=True, slots=True)
class Start:
    """Where each stream's consumer starts."""

    time: dt.datetime | None = None
    messages_seq: int | None = None  # MESSAGES only; other streams start new

    def policy(self, stream: str) -> dict[str, object]:
        if self.time is not None:
            return {
                "deliver_policy": DeliverPolicy.BY_START_TIME,
                "opt_start_time": self.time,
            }
        if self.messages_seq is not None and stream == MESSAGES_STREAM:
            return {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": self.messages_seq + 1,
            }
        return {"deliver_policy": DeliverPolicy.NEW}


def parse_since(raw: str | None, now: dt.datetime | None = None) -> Start:
    """``SEQ`` (a MESSAGES sequence), a duration ago (``90s``, ``15m``, ``2h``,
    ``1d``) or an RFC 3339 time; nothing means live events only."""
    if raw is None:
        return Start()
    if raw.isdigit():
        return Start(messages_seq=int(raw))
    now = now or dt.datetime.now(dt.UTC)
    found = _DURATION.match(raw)
    if found:
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
        return Start(time=now - dt.timedelta(seconds=seconds))
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise TailError(
            f"--since {raw!r}: expected a sequence, a duration like 15m, "
            "or a time like 2026-01-01T00:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise TailError(f"--since {raw!r}: give a time zone (Z or +hh:mm)")
    return Start(time=when)


def streams_for(types: list[str] | None) -> list[str]:
    if not types:
        return catalogue.event_streams()
    try:
        wanted = {catalogue.stream_of(t) for t in types}
    except KeyError as exc:
        known = [c.name for c in catalogue.CHANNELS if c.for_integrators]
        raise TailError(f"unknown event type {exc}; known: {known}") from None
    return [s for s in catalogue.event_streams() if s in wanted]


class StreamReader:
    """One ephemeral pull consumer on one stream, filtered to a tenant."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        *,
        consumer: str,
        filter_subject: str,
        start: Start,
    ) -> None:
        self.stream = stream
        self._nc = nc
        self._js = nc.jetstream(timeout=API_TIMEOUT)
        self._consumer = consumer
        self._filter = filter_subject
        self._start = start
        self.backlog = 0  # events that existed when the consumer was made

    async def open(self) -> None:
        # A consumer left by an earlier tail under this name would keep its
        # old start, and a start cannot be changed by an update.
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(self.stream, self._consumer)
        config = ConsumerConfig(
            name=self._consumer,
            filter_subject=self._filter,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            **self._start.policy(self.stream),
        )
        try:
            info = await self._js.add_consumer(self.stream, config)
        except TimeoutError:
            # A refused publish gets no answer at all.
            raise TailError(
                f"no answer creating a consumer on {self.stream}: these NATS "
                f"credentials may not read {self._filter}"
            ) from None
        except nats.errors.Error as exc:
            raise TailError(f"cannot read {self.stream}: {exc}") from exc
        self.backlog = info.num_pending or 0

    async def run(self, out: asyncio.Queue[tuple[str, Msg | None]]) -> None:
        """Put every event into ``out``; ``(stream, None)`` on each idle beat."""
        inbox = self._nc.new_inbox()
        received: asyncio.Queue[Msg] = asyncio.Queue()
        sub = await self._nc.subscribe(inbox, cb=received.put)
        request = _encode(
            {
                "batch": BATCH,
                "expires": int(EXPIRES * 1e9),
                "idle_heartbeat": int(HEARTBEAT * 1e9),
            }
        )
        pull = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self._consumer}"
        try:
            owed = 0
            while True:
                if owed <= 0:
                    await self._nc.publish(pull, request, reply=inbox)
                    owed = BATCH
                try:
                    msg = await asyncio.wait_for(received.get(), HEARTBEAT * 3)
                except TimeoutError:
                    owed = 0  # the pull request was lost; ask again
                    continue
                status = (msg.headers or {}).get("Status") if not msg.data else None
                if status is None:
                    owed -= 1
                    await out.put((self.stream, msg))
                elif status == "100":
                    await out.put((self.stream, None))
                else:  # 404, 408: this request is over; 409: refused
                    owed = 0
                    if status == "409":
                        raise TailError(
                            f"{self.stream}: {msg.headers.get('Description')}"
                        )
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def close(self) -> None:
        with contextlib.suppress(nats.errors.Error, NotFoundError, TimeoutError):
            await self._js.delete_consumer(self.stream, self._consumer)


def line(stream: str, msg: Msg) -> bytes:
    return _encode(
        {
            "stream": stream,
            "seq": msg.metadata.sequence.stream,
            "subject": msg.subject,
            "event": msgspec.Raw(msg.data),
        }
    )


class Merger:
    """History in time order across streams, then live events as they come."""

    def __init__(
        self, readers: list[StreamReader], emit: Callable[[str, Msg], None]
    ) -> None:
        self._owed = {r.stream: r.backlog for r in readers}
        self._heads: dict[str, deque[Msg]] = {r.stream: deque() for r in readers}
        self._emit = emit

    def offer(self, stream: str, msg: Msg | None) -> None:
        if msg is None:
            return
        self._heads[stream].append(msg)
        self._flush()

    def give_up_on(self, stream: str) -> None:
        """Stop holding the others back for history ``stream`` never sent."""
        if self._owed[stream] and not self._heads[stream]:
            log.warning(
                "tail.history_incomplete",
                extra={"stream": stream, "missing": self._owed[stream]},
            )
            self._owed[stream] = 0
            self._flush()

    @property
    def waiting_for(self) -> list[str]:
        return [s for s, owed in self._owed.items() if owed and not self._heads[s]]

    def _flush(self) -> None:
        while not self.waiting_for:
            ready = [s for s, head in self._heads.items() if head]
            if not ready:
                return
            stream = min(ready, key=lambda s: self._heads[s][0].metadata.timestamp)
            msg = self._heads[stream].popleft()
            if self._owed[stream]:
                self._owed[stream] -= 1
            self._emit(stream, msg)


async def tail(
    nc: Client,
    *,
    tenant: str,
    consumer: str,
    start: Start,
    types: list[str] | None = None,
    count: int = 0,
    prefix: str = "msg",
) -> int:
    """Print the tenant's events until interrupted, or until ``count``."""
    streams = streams_for(types)
    wanted = set(types or [])
    filter_subject = f"{prefix}.evt.{tenant}.>"
    readers = [
        StreamReader(
            nc, stream, consumer=consumer, filter_subject=filter_subject, start=start
        )
        for stream in streams
    ]
    printed = 0
    done = asyncio.Event()
    type_at = slice(prefix.count(".") + 3, prefix.count(".") + 5)

    def emit(stream: str, msg: Msg) -> None:
        nonlocal printed
        if done.is_set():  # the rest of a merged batch, past --count
            return
        if wanted and ".".join(msg.subject.split(".")[type_at]) not in wanted:
            return
        sys.stdout.buffer.write(line(stream, msg) + b"\n")
        sys.stdout.flush()
        printed += 1
        if count and printed >= count:
            done.set()

    inbox: asyncio.Queue[tuple[str, Msg | None]] = asyncio.Queue()
    pulls: list[asyncio.Task[None]] = []
    try:
        for reader in readers:
            await reader.open()
        merger = Merger(readers, emit)
        pulls = [asyncio.create_task(r.run(inbox)) for r in readers]
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while not done.is_set():
            for pull in pulls:
                if pull.done():
                    pull.result()  # a reader failed: raise its error here
            try:
                stream, msg = await asyncio.wait_for(inbox.get(), HEARTBEAT)
            except TimeoutError:
                stream, msg = "", None
            if msg is not None:
                quiet_since = loop.time()
                merger.offer(stream, msg)
            elif merger.waiting_for and loop.time() - quiet_since > STALL:
                for waiting in merger.waiting_for:
                    merger.give_up_on(waiting)
    finally:
        for pull in pulls:
            pull.cancel()
        await asyncio.gather(*pulls, return_exceptions=True)
        for reader in readers:
            await reader.close()
    return 0


def consumer_name(user: str) -> str:
    """Integrators may only name consumers after themselves; the admin (a
    developer without integrator credentials) gets a fresh name each time."""
    if user and user != ADMIN:
        return user
    return f"tail-{secrets.token_hex(4)}"
