"""A gateway's heartbeats keep their pace while presence answers slowly.

The reporter talks to a responder on the real NATS server that takes its
time over every report, as a presence service under load does. Under a
prefix of its own, so the stack's presence service does not answer."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace

import nats
from prometheus_client import CollectorRegistry

from libs.bus.codec import decoder, encode
from libs.bus.subjects import Subjects
from libs.schema.api import PresenceReport, PresenceReportReply
from services.gateway.metrics import GatewayMetrics
from services.gateway.presence import PresenceReporter
from tests.support import unique

HEARTBEAT = 1.0
SLOW_ANSWER = 0.4  # per report, longer than the 0.1 s between two slices


async def test_heartbeats_keep_their_interval_when_presence_answers_slowly(
    nc: nats.NATS,
) -> None:
    subjects = Subjects(prefix=unique("rpt"))
    beats: dict[str, list[float]] = {}

    answering: set[asyncio.Task[None]] = set()

    async def answer_late(msg: nats.aio.msg.Msg) -> None:
        await asyncio.sleep(SLOW_ANSWER)
        await msg.respond(encode(PresenceReportReply()))

    async def slow_presence(msg: nats.aio.msg.Msg) -> None:
        report = decoder(PresenceReport).decode(msg.data)
        for ref in report.heartbeats:
            beats.setdefault(ref.connection, []).append(time.monotonic())
        # Slow, not stuck: each report waits, but many wait at once.
        task = asyncio.create_task(answer_late(msg))
        answering.add(task)
        task.add_done_callback(answering.discard)

    sub = await nc.subscribe(subjects.presence_report("*"), cb=slow_presence)
    reporter = PresenceReporter(
        nc,
        subjects,
        GatewayMetrics(CollectorRegistry()),
        gateway="gateway-test",
        heartbeat=HEARTBEAT,
        timeout=5.0,
        flush=0.1,
    )
    # Sockets of many tenants, so that every slice has some to report.
    sockets = [
        SimpleNamespace(connection_id=f"c{i}", tenant=f"t{i % 20}", user_id=f"u{i}")
        for i in range(200)
    ]
    for socket in sockets:
        reporter.connected(socket)  # type: ignore[arg-type]
    running = asyncio.create_task(reporter.run())
    await asyncio.sleep(6 * HEARTBEAT)
    reporter.stop()
    await running
    await sub.unsubscribe()

    gaps = [
        later - earlier
        for times in beats.values()
        for earlier, later in itertools.pairwise(times)
    ]
    assert set(beats) == {s.connection_id for s in sockets}  # every socket beat
    # Each socket beats once an interval, late by at most the round of
    # reports still going when its slice was due.
    assert max(gaps) < HEARTBEAT + SLOW_ANSWER + 0.3, max(gaps)
    assert min(len(t) for t in beats.values()) >= 4
