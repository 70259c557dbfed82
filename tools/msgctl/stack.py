"""``msgctl stack up|down|status``: the one-machine stack behind make run/stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from libs.devstack.supervisor import PID_FILE, READY_FILE

START_TIMEOUT = 300.0
DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def _pid(root: Path) -> int | None:
    try:
        pid = int((root / PID_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def running(root: Path) -> dict[str, Any]:
    """Where the running `make run` stack listens; empty when none runs."""
    try:
        return json.loads((root / READY_FILE).read_text())
    except FileNotFoundError:
        return {}


def gateway_url(root: Path) -> str:
    """The running stack's first gateway, else the default one."""
    return running(root).get("gateways", [DEFAULT_GATEWAY])[0]


def _print_ready(root: Path) -> None:
    ready = json.loads((root / READY_FILE).read_text())
    print(f"gateway: {ready['gateways'][0]}")
    for url in ready["gateways"][1:]:
        print(f"gateway replica: {url}")
    print(f"nats: {ready['nats']}  redis: {ready['redis']}")
    if ready.get("nats_monitor"):
        print(f"nats monitor: {ready['nats_monitor']} (/varz, /jsz, /connz)")
    print(f"postgres: {ready['postgres']}")
    for name, url in ready.get("services", {}).items():
        print(f"{name}: {url}/metrics")
    print(f"logs: {root / 'logs'}   stop with: make stop")


def up(root: Path, scale: int) -> int:
    root = root.resolve()
    if _pid(root) is not None and (root / READY_FILE).exists():
        print("stack already running")
        _print_ready(root)
        return 0
    (root / "logs").mkdir(parents=True, exist_ok=True)
    log_path = root / "logs" / "supervisor.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "libs.devstack.supervisor", "--root", str(root),
             "--scale", str(scale)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while not (root / READY_FILE).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"stack failed to start; last lines of {log_path}:", file=sys.stderr)
            lines = log_path.read_text(errors="replace").splitlines()[-20:]
            print("\n".join(lines), file=sys.stderr)
            if proc.poll() is None:
                proc.terminate()
            return 1
        time.sleep(0.2)
    if not os.environ.get("MSG_JWT_SECRET"):
        print(
            f"WARNING: using the DEVELOPMENT JWT secret in {root / 'dev-jwt-secret'}; "
            "set MSG_JWT_SECRET for anything but local development."
        )
    _print_ready(root)
    return 0


def down(root: Path) -> int:
    root = root.resolve()
    pid = _pid(root)
    if pid is None:
        print("stack not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while _pid(root) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid(root) == pid:
        os.killpg(pid, signal.SIGKILL)
        print("stack did not stop in time; killed")
        return 1
    print("stack stopped")
    return 0


def status(root: Path) -> int:
    root = root.resolve()
    if _pid(root) is None:
        print("stack not running")
        return 1
    if not (root / READY_FILE).exists():
        print("stack starting")
        return 1
    _print_ready(root)
    return 0
