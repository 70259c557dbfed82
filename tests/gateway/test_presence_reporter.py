"""A gateway's heartbeats keep their pace while presence answers slowly, and
while the gateway's own event loop runs late.

The reporter talks to a responder on the real NATS server that takes its
time over every report, as a presence service under load does. Under a
prefix of its own, so the stack's presence service does not answer."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace

import nats
import pytest
from prometheus_client import CollectorRegistry

from libs.bus.codec import decoder, encode
from libs.bus.subjects import Subjects
from libs.schema.api import PresenceReport, PresenceReportReply
from services.gateway.metrics import GatewayMetrics
from services.gateway.presence import PresenceReporter
from tests.support import unique

HEARTBEAT = 1.0
SLOW_ANSWER = 0.4  # per report, longer than the 0.1 s between two slices


async def _beats(
    nc: nats.NATS, answer_after: float, hog: float
) -> dict[str, list[float]]:
    """When each of 200 sockets beat, over six heartbeat intervals, with
    presence answering after ``answer_after`` seconds and the loop blocked
    for ``hog`` seconds at a time."""
    subjects = Subjects(prefix=unique("rpt"))
    beats: dict[str, list[float]] = {}
    answering: set[asyncio.Task[None]] = set()

    async def answer_late(msg: nats.aio.msg.Msg) -> None:
        await asyncio.sleep(answer_after)
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
    for i in range(200):
        socket = SimpleNamespace(
            connection_id=f"c{i}", tenant=f"t{i % 20}", user_id=f"u{i}"
        )
        reporter.connected(socket)  # type: ignore[arg-type]
    running = asyncio.create_task(reporter.run())
    end = time.monotonic() + 6 * HEARTBEAT
    while time.monotonic() < end:
        time.sleep(hog)  # noqa: ASYNC251 - a busy gateway's loop, for real
        await asyncio.sleep(0.05)
    reporter.stop()
    await running
    await sub.unsubscribe()
    assert len(beats) == 200  # every socket beat
    return beats


def _longest_gap(beats: dict[str, list[float]]) -> float:
    return max(
        later - earlier
        for times in beats.values()
        for earlier, later in itertools.pairwise(times)
    )


@pytest.mark.parametrize(
    ("answer_after", "hog"),
    [
        pytest.param(0.4, 0.0, id="presence-answers-slowly"),
        pytest.param(0.01, 0.3, id="gateway-loop-runs-late"),
    ],
)
async def test_heartbeats_keep_their_interval(
    nc: nats.NATS, answer_after: float, hog: float
) -> None:
    beats = await _beats(nc, answer_after=answer_after, hog=hog)

    # Each socket beats once an interval, late by at most one slow round of
    # reports or one blocked stretch of the loop, never by one per slice
    # (which would be 10 of them: 4 s and more).
    assert _longest_gap(beats) < HEARTBEAT + max(answer_after, hog) + 0.4
    assert min(len(t) for t in beats.values()) >= 4
