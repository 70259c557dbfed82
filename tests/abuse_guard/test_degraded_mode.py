"""The guard without Redis: it keeps answering from memory with the same
rules, says so in a metric and one ERROR line, and goes back to Redis the
moment Redis answers again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from libs import limits
from libs.devstack.servers import RedisServer, free_port
from services.abuse_guard import redis_guard
from services.abuse_guard.guard import AbuseGuard
from services.abuse_guard.local_guard import LocalGuard
from services.abuse_guard.metrics import AbuseMetrics
from tests.abuse_guard.sends import DEFAULTS, send
from tests.support import eventually, unique


def _events(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "abuse_guard" and r.levelno == level
    ]


async def test_redis_stopped_and_started_again(
    stack_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(stack_root / unique("outage-"), free_port())
    client = redis_guard.connect(f"redis://127.0.0.1:{server.port}/0")
    registry = CollectorRegistry()
    metrics = AbuseMetrics(registry)
    guard = AbuseGuard(
        redis_guard.RedisGuard(client, DEFAULTS), LocalGuard(), DEFAULTS, metrics
    )
    stopping = asyncio.Event()
    watching = asyncio.create_task(guard.watch(stopping))
    try:
        server.start()
        await guard.start()
        tenant = unique()
        await limits.set_override(
            client, tenant, limits.LimitOverride(limit=2, window=60)
        )
        before, from_memory_before = await guard.check(send(tenant, "before"))

        server.stop()
        during = [await guard.check(send(tenant, f"during {i}")) for i in range(3)]
        repeat, _ = await guard.check(send(tenant, "during 0"))
        gauge_during = registry.get_sample_value("messaging_abuse_degraded")

        server.start()

        async def recovered() -> bool:
            return not guard.degraded

        await eventually(recovered)
        after, from_memory_after = await guard.check(send(tenant, "after"))
    finally:
        stopping.set()
        await watching
        server.stop()
        await client.aclose()

    assert (before.verdict, from_memory_before) == ("allow", False)
    # Same rules from memory, with the limits Redis last reported (2 per
    # 60 s), counted afresh: the send before the outage is unknown here.
    assert [d.verdict for d, _ in during] == ["allow", "allow", "rate_limited"]
    assert all(from_memory for _, from_memory in during)
    assert during[2][0].policy.limit == 2
    assert 0 < during[2][0].retry_after <= 60
    assert repeat.verdict == "duplicate"
    assert gauge_during == 1
    assert registry.get_sample_value("messaging_abuse_degraded") == 0
    assert registry.get_sample_value("messaging_abuse_degraded_checks_total") == 4
    assert _events(caplog, logging.ERROR) == ["abuse.degraded"]  # once, not per check
    assert _events(caplog, logging.INFO) == ["abuse.recovered"]
    # Back on Redis, which still holds the send from before the outage.
    assert (after.verdict, from_memory_after) == ("allow", False)
    assert after.remaining == 0


async def test_redis_down_at_start_up(stack_root: Path) -> None:
    client = redis_guard.connect(f"redis://127.0.0.1:{free_port()}/0")
    metrics = AbuseMetrics(CollectorRegistry())
    guard = AbuseGuard(
        redis_guard.RedisGuard(client, DEFAULTS), LocalGuard(), DEFAULTS, metrics
    )
    try:
        await guard.start()
        decision, from_memory = await guard.check(send(unique()))
    finally:
        await client.aclose()

    assert guard.degraded
    assert (decision.verdict, from_memory) == ("allow", True)
    assert decision.policy == DEFAULTS
