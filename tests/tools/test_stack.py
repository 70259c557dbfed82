"""``make run`` and ``make stop`` (``msgctl stack up|down``) as a new user
meets them: moved to other ports with the variables README.md names, it
prints where everything listens, and every URL it prints answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from libs.devstack.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _msgctl(root: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tools.msgctl", "--root", str(root), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _answers(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status


def test_stack_up_on_other_ports_prints_where_it_listens(tmp_path: Path) -> None:
    ports = {
        "MSG_HTTP_PORT": free_port(),
        "MSG_DEV_NATS_PORT": free_port(),
        "MSG_DEV_NATS_MONITOR_PORT": free_port(),
        "MSG_DEV_POSTGRES_PORT": free_port(),
        "MSG_DEV_REDIS_PORT": free_port(),
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MSG_", "OTEL_"))
    }
    env.update({key: str(port) for key, port in ports.items()})
    env["MSG_DEV_OPS_PORT_BASE"] = "0"  # each ops port a free one
    root = tmp_path / "data"

    try:
        printed = _msgctl(root, env, "stack", "up")
        urls = dict(re.findall(r"^([a-z ]+): (\S+)", printed, re.M))
        gateway = _answers(urls["gateway"] + "/readyz")
        monitor = _answers(urls["nats monitor"] + "/healthz")
        status = _msgctl(root, env, "stack", "status")
    finally:
        stopped = _msgctl(root, env, "stack", "down")

    assert urls["gateway"] == f"http://127.0.0.1:{ports['MSG_HTTP_PORT']}"
    assert urls["nats"] == f"nats://127.0.0.1:{ports['MSG_DEV_NATS_PORT']}"
    assert urls["nats monitor"] == (
        f"http://127.0.0.1:{ports['MSG_DEV_NATS_MONITOR_PORT']}"
    )
    assert f":{ports['MSG_DEV_POSTGRES_PORT']}/" in urls["postgres"]
    assert f"redis://127.0.0.1:{ports['MSG_DEV_REDIS_PORT']}/" in printed
    assert (gateway, monitor) == (200, 200)
    assert "DEVELOPMENT JWT secret" in printed
    assert f"gateway: {urls['gateway']}" in status
    assert "stack stopped" in stopped
