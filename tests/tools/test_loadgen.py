"""The load generator, driven against the test stack: a short run of every
kind of traffic it makes, judged by the SLO table a user would read."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from libs.devstack.stack import Stack
from tools.loadgen import report
from tools.loadgen.cli import execute, limit_setter
from tools.loadgen.profile import LoadProfile
from tools.loadgen.recorder import Recorder

pytestmark = pytest.mark.slow


async def _run(
    stack: Stack, out: Path, gateways: list[str], **profile: Any
) -> dict[str, Any]:
    """One short load with 2 abusers (a limit window of 2 s, so they burst
    within the run) against ``gateways``; its result."""
    settings = {"warmup": 1, "churn": 0, "abusers": 2, "abuse_window": 2.0}
    (result,) = await execute(
        LoadProfile(**{**settings, **profile}, gateways=gateways),
        stack.jwt_secret,
        out,
        quiet=True,
        set_limits=limit_setter(stack.urls["MSG_REDIS_URL"]),
    )
    return result


async def test_a_short_run_measures_every_slo_and_writes_its_files(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await _run(
        stack,
        tmp_path,
        stack.gateway_urls,
        tenants=4,
        sockets=40,
        rate=20,
        duration=6,
        churn=1,
        duplicate_share=0.1,
        retry_share=0.1,
    )
    printed = capsys.readouterr().out
    verdicts = {c.slo: c.passed for c in report.checks(result)}

    assert result["accepted"] >= 100  # 20/s for 6 s, and the abusers' own
    assert result["lost"] == 0, result["lost_sample"]
    assert result["repeated"] == 0
    assert result["errors_5xx"] == 0
    assert result["counts"]["churn_cycles"] >= 1
    assert result["counts"]["retries_answered_original"] == result["counts"]["retries"]
    # Every SLO was measured (none "n/a") and held on an idle stack.
    assert verdicts == dict.fromkeys(verdicts, True), report.table(result)
    assert "SLO-MSG-SPAM-BLOCK" in printed
    assert "FAIL" not in printed
    assert (tmp_path / "result.json").stat().st_size > 0
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_refusals_for_capacity_are_not_blamed_on_the_abuse_guard(
    stack: Stack, tmp_path: Path
) -> None:
    """Against a gateway that waits on at most 2 calls at once, setup still
    creates every conversation (it retries after Retry-After), and abusers'
    sends refused with 503 count neither as blocked nor as let through."""
    gateway = stack.make_service("gateway", 12)
    gateway.env["MSG_GATEWAY_MAX_IN_FLIGHT"] = "2"
    gateway.start()
    try:
        await asyncio.to_thread(gateway.wait_ready)
        result = await _run(
            stack, tmp_path, [gateway.url], tenants=2, sockets=12, rate=10, duration=4
        )
    finally:
        gateway.stop()
    counts = result["counts"]
    verdicts = {c.slo: c.passed for c in report.checks(result)}

    assert counts["abuse_status_503"] > 0  # the bursts did meet the bound
    assert counts["abuse_429"] == counts["abuse_over_limit"]
    assert verdicts["SLO-MSG-SPAM-BLOCK"] is not False
    assert result["lost"] == 0


def test_a_delivery_that_never_came_is_lost_and_a_second_one_is_a_repeat() -> None:
    rec = Recorder()
    rec.accepted("m1", frozenset({1, 2}))
    rec.accepted("m2", frozenset({1}))
    rec.received(1, "m1", 0.01)
    rec.received(1, "m1", 0.01)
    rec.received(1, "m2", None)  # a replay after a reconnect counts

    assert rec.lost() == 1
    assert rec.lost_sample() == [("m1", 2)]
    assert rec.repeats == 1
