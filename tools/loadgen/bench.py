"""``msgctl bench``: the baseline, the peer and the ceiling in one run.

Against the running dev stack (``make run``): the seed's baseline load on the
messaging backend, the same fan-out workload on the python-socketio peer
(started here, on the same PostgreSQL and Redis), and the raw JetStream
publish-and-ack rate; then the ratios. ``--sweep`` repeats both targets at
rising rates to find where each one's latency climbs (the knee).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from libs.devstack.natsauth import dev_admin_env
from tools.loadgen import ceiling, report
from tools.loadgen.cli import execute, limit_setter
from tools.loadgen.profile import LoadProfile

PEER_PORT = 8090


class Peer:
    """The python-socketio peer as a child process on the stack's servers."""

    def __init__(
        self, ready: dict[str, Any], secret: str, port: int, log: Path
    ) -> None:
        env = {
            **os.environ,
            "MSG_JWT_SECRET": secret,
            "MSG_DATABASE_URL": ready["postgres"],
            "MSG_REDIS_URL": ready["redis"],
        }
        self.url = f"http://127.0.0.1:{port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tools.loadgen.peer", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"peer did not start; see {log}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _row(result: dict[str, Any]) -> dict[str, float]:
    lat, facts = result["latency_ms"], result["facts"]
    return {
        "accepted_per_s": result["accepted"] / result["profile"]["duration"],
        "post_p95_ms": lat["post"]["p95"],
        "post_p99_ms": lat["post"]["p99"],
        "get_p95_ms": lat["get"]["p95"],
        "delivery_p95_ms": lat["delivery"]["p95"],
        "delivery_p99_ms": lat["delivery"]["p99"],
        "errors_5xx": result["errors_5xx"],
        "lost": result["lost"],
        "rss_per_socket_kib": facts.get("gateway_rss_per_socket_bytes", 0) / 1024,
        "passed": report.passed(result),
    }


def _ratio(a: float, b: float) -> str:
    return "n/a" if not a or not b else f"{b / a:.2f}x"


def side_by_side(ours: dict[str, float], peer: dict[str, float] | None) -> str:
    lines = [f"{'':28}{'messaging':>12}{'socketio peer':>16}{'peer/ours':>12}"]
    for key, label in (
        ("accepted_per_s", "accepted sends/s"),
        ("post_p95_ms", "POST p95 (ms)"),
        ("post_p99_ms", "POST p99 (ms)"),
        ("get_p95_ms", "GET p95 (ms)"),
        ("delivery_p95_ms", "delivery p95 (ms)"),
        ("delivery_p99_ms", "delivery p99 (ms)"),
        ("rss_per_socket_kib", "memory per socket (KiB)"),
        ("errors_5xx", "5xx answers"),
        ("lost", "deliveries lost"),
    ):
        other = "-" if peer is None else f"{peer[key]:.1f}"
        ratio = "-" if peer is None else _ratio(ours[key], peer[key])
        lines.append(f"{label:28}{ours[key]:>12.1f}{other:>16}{ratio:>12}")
    return "\n".join(lines)


def sweep_table(runs: list[dict[str, Any]]) -> str:
    head = (
        f"{'sends/s':>8} | {'ours POST':>9} {'delivery':>9} {'GET':>7} {'verdict':>7}"
        f" | {'peer POST':>9} {'delivery':>9} {'GET':>7} {'verdict':>7}"
    )
    lines = [head, "-" * len(head)]

    def cells(row: dict[str, Any] | None) -> str:
        if row is None:
            return f"{'-':>9} {'-':>9} {'-':>7} {'-':>7}"
        verdict = "PASS" if row["passed"] else "FAIL"
        return (
            f"{row['post_p95_ms']:>9.1f} {row['delivery_p95_ms']:>9.1f}"
            f" {row['get_p95_ms']:>7.1f} {verdict:>7}"
        )

    for run in runs:
        lines.append(
            f"{run['rate']:>8g} | {cells(run['messaging'])} | {cells(run['peer'])}"
        )
    return "\n".join(lines)


def run_command(args: argparse.Namespace, secret: str) -> int:
    ready_path = args.root / "run" / "ready.json"
    if not ready_path.exists():
        print("msgctl bench: start the stack first (make run)", file=sys.stderr)
        return 2
    ready = json.loads(ready_path.read_text())
    out = args.out or Path("bench-results") / time.strftime("bench-%Y%m%d-%H%M%S")
    base = LoadProfile(
        tenants=args.tenants,
        sockets=args.sockets,
        rate=args.rate,
        duration=args.duration,
        gateways=ready["gateways"],
    )
    if args.plain:
        base = base.plain_fanout()
    rates = [float(r) for r in args.sweep.split(",") if r] or [base.rate]
    print(
        f"\n=== messaging backend at {', '.join(f'{r:g}' for r in rates)} sends/s ==="
    )
    ours = asyncio.run(
        execute(
            base,
            secret,
            out / "messaging",
            False,
            set_limits=limit_setter(ready["redis"]),
            rates=rates,
        )
    )
    theirs: list[dict[str, Any] | None] = [None] * len(rates)
    if not args.skip_peer:
        peer = Peer(ready, secret, PEER_PORT, out / "peer.log")
        try:
            print("\n=== python-socketio peer, the same workload ===")
            profile = replace(base, gateways=[peer.url])
            theirs = list(
                asyncio.run(
                    execute(profile, secret, out / "peer", False, True, rates=rates)
                )
            )
        finally:
            peer.stop()
    summary: dict[str, Any] = {"profile": base.as_dict(), "runs": []}
    for rate, mine, other in zip(rates, ours, theirs, strict=True):
        summary["runs"].append(
            {
                "rate": rate,
                "messaging": _row(mine),
                "peer": None if other is None else _row(other),
            }
        )
    print("\n=== JetStream publish-and-ack from Python (the ceiling for POST) ===")
    top = asyncio.run(ceiling.measure(ready["nats"], dev_admin_env(args.root)))
    summary["ceiling"] = top
    one = (
        f"{top['sequential_per_s']}/s (p50 {top['sequential_p50_ms']:.2f} ms, "
        f"p99 {top['sequential_p99_ms']:.2f} ms)"
    )
    many = f"{top['pipelined_per_s']}/s with {top['in_flight']} in flight"
    print(f"one at a time: {one}; {many}")
    print("\n=== rate by rate (p95 in ms; PASS = every SLO held) ===")
    print(sweep_table(summary["runs"]))
    for run in summary["runs"]:
        print(f"\n=== side by side at {run['rate']:g} sends/s ===")
        print(side_by_side(run["messaging"], run["peer"]))
        used = run["messaging"]["accepted_per_s"] / top["pipelined_per_s"]
        print(f"messaging accepted rate = {100 * used:.2f}% of the JetStream ceiling")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nsummary: {out / 'summary.json'}")
    return 0 if all(r["messaging"]["passed"] for r in summary["runs"]) else 1
