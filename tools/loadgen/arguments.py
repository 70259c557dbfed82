"""The arguments of ``msgctl loadtest`` and ``msgctl bench``, and what they
need installed.

This module imports nothing outside the base dependencies, so that ``msgctl``
builds its parser (and runs every other command) in the container image,
which installs the project without its ``[bench]`` extra. The load generator
itself is imported only when one of these two commands runs.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from tools.loadgen.profile import LoadProfile

INSTALL_HINT = "pip install 'messaging-backend[bench]' (make install does)"
# Modules the [bench] extra brings: the latency histograms and the plot
# (both commands), and the python-socketio peer that bench starts.
LOADTEST_MODULES = ("hdrh", "matplotlib")
PEER_MODULES = ("socketio",)


def add_loadtest(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("loadtest", help="drive load against a running stack")
    d = LoadProfile()
    p.add_argument("--tenants", type=int, default=d.tenants)
    p.add_argument("--sockets", type=int, default=d.sockets)
    p.add_argument("--rate", type=float, default=d.rate, help="sends per second")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds")
    p.add_argument(
        "--warmup",
        type=float,
        default=d.warmup,
        help="seconds of the same load before measuring (caches, pools)",
    )
    p.add_argument("--get-share", type=float, default=d.get_share)
    p.add_argument("--churn", type=float, default=d.churn, help="reconnects per second")
    p.add_argument("--abusers", type=int, default=d.abusers)
    p.add_argument("--duplicate-share", type=float, default=d.duplicate_share)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--gateway",
        action="append",
        default=None,
        help="gateway URL (repeat for several); default: the running dev stack's",
    )
    p.add_argument(
        "--peer",
        action="store_true",
        help="drive the python-socketio peer (tools.loadgen.peer) at --gateway "
        "instead; it has no presence, resume or abuse checks, so churn, "
        "abusers and duplicate resends are off",
    )
    p.add_argument("--out", type=Path, default=None, help="folder for result files")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def add_bench(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="baseline vs the socketio peer vs JetStream")
    p.add_argument("--tenants", type=int, default=200)
    p.add_argument("--sockets", type=int, default=1500)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument(
        "--sweep",
        default="",
        help="comma-separated rates to step through on both targets (the knee)",
    )
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument(
        "--plain",
        action="store_true",
        help="run the messaging backend on the peer's plain workload too (no "
        "socket churn, abusers or resends), for a like-for-like comparison",
    )
    p.add_argument("--out", type=Path, default=None)
    return p


def missing(modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` cannot be imported here."""
    absent = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            absent.append(module)
    return absent
