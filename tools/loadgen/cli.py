"""``msgctl loadtest``: run a load profile against a running stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from libs.limits import LimitOverride, set_override
from libs.service import raise_open_files_limit, tune_gc
from tools.loadgen import report
from tools.loadgen.profile import LoadProfile
from tools.loadgen.runner import LimitSetter, LoadRun
from tools.loadgen.target import MessagingTarget, SocketIoTarget


def _ready(root: Path) -> dict[str, Any]:
    ready = root / "run" / "ready.json"
    return json.loads(ready.read_text()) if ready.exists() else {}


def gateways_of(root: Path) -> list[str]:
    return _ready(root).get("gateways", ["http://127.0.0.1:8080"])


def limit_setter(redis_url: str | None) -> LimitSetter | None:
    """Sets the abusers' own limit through the abuse guard's overrides, so the
    run knows exactly which of their sends are over it."""
    if not redis_url:
        return None

    async def set_limits(
        users: list[tuple[str, str]], limit: int, window: float
    ) -> None:
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            override = LimitOverride(limit=limit, window=max(1, round(window)))
            for tenant, user in users:
                await set_override(redis, tenant, override, user)
        finally:
            await redis.aclose()

    return set_limits


async def execute(
    profile: LoadProfile,
    secret: str,
    out: Path,
    quiet: bool,
    peer: bool = False,
    set_limits: LimitSetter | None = None,
    rates: list[float] | None = None,
) -> list[dict[str, Any]]:
    """Run a profile, at each of ``rates`` in turn on the same sockets (its own
    rate when not given); print each SLO table, write each one's files into
    ``out`` (or ``out/<rate>`` for several) and return the results."""
    raise_open_files_limit()  # a socket per simulated client
    tune_gc()  # thousands of sockets: the same pauses as a gateway
    if peer:
        profile = profile.plain_fanout()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        kind = SocketIoTarget if peer else MessagingTarget
        target = kind(profile.gateways, secret, session)
        run = LoadRun(profile, target, set_limits=set_limits, progress=not quiet)
        steps = rates or [profile.rate]
        results = []
        try:
            await run.setup()
            for rate in steps:
                run.profile = replace(profile, rate=rate)
                await run.load()
                result = report.summarise(run)
                where = out if len(steps) == 1 else out / f"{rate:g}"
                report.write_json(result, where / "result.json")
                report.plot(result, where / "latency.png")
                print(report.table(result))
                print(f"\nresult: {where / 'result.json'}", flush=True)
                results.append(result)
        finally:
            await run.teardown()
    return results


def run_command(args: argparse.Namespace, secret: str) -> int:
    profile = LoadProfile(
        tenants=args.tenants,
        sockets=args.sockets,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        get_share=args.get_share,
        churn=args.churn,
        abusers=args.abusers,
        duplicate_share=args.duplicate_share,
        seed=args.seed,
        gateways=args.gateway or gateways_of(args.root),
    )
    out = args.out or Path("bench-results") / time.strftime("%Y%m%d-%H%M%S")
    setter = None if args.peer else limit_setter(_ready(args.root).get("redis"))
    (result,) = asyncio.run(
        execute(profile, secret, out, args.quiet, peer=args.peer, set_limits=setter)
    )
    return 0 if report.passed(result) else 1
