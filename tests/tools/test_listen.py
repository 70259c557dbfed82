"""``msgctl listen`` as README.md has a user run it: it finds the running
stack, stays connected through a gateway restart or an expired token
without losing or repeating a message, stops on a refused token, and Ctrl-C
ends it quietly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from libs.devstack.servers import free_port
from libs.devstack.stack import Stack
from tests.support import Client, unique
from tools.msgctl.stack import DEFAULT_GATEWAY, gateway_url

ROOT = Path(__file__).resolve().parents[2]


class Listen:
    """``msgctl listen`` as a child process, its output read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, secret: str, *args: str) -> Listen:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.msgctl",
            *args,
            cwd=ROOT,
            env={**os.environ, "MSG_JWT_SECRET": secret},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def until(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        """Read frames up to the next one of ``event``."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                assert line, f"listen exited: {await self.stderr()}"
                self.frames.append(json.loads(line))
                if self.frames[-1]["event"] == event:
                    return self.frames[-1]["data"]

    async def finish(self, timeout: float = 10.0) -> tuple[int, str]:
        """Its exit code and everything it wrote on stderr."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            rest = await self.proc.stdout.read()
            code = await self.proc.wait()
        self.frames += [json.loads(line) for line in rest.splitlines()]
        return code, await self.stderr()

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()

    def messages(self) -> list[str]:
        return [f["data"]["id"] for f in self.frames if f["event"] == "messages:new"]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


def test_the_default_gateway_is_the_running_stacks_first(tmp_path: Path) -> None:
    assert gateway_url(tmp_path) == DEFAULT_GATEWAY == "http://127.0.0.1:8080"

    (tmp_path / "run").mkdir()
    (tmp_path / "run/ready.json").write_text(
        json.dumps({"gateways": ["http://127.0.0.1:18080", "http://127.0.0.1:18081"]})
    )

    assert gateway_url(tmp_path) == "http://127.0.0.1:18080"


async def test_a_gateway_restart_loses_and_repeats_nothing(
    stack: Stack, client: Client, tmp_path: Path
) -> None:
    """listen, with no --url, follows the ready file of the stack in --root to
    a gateway of its own; that gateway stops (1001) while a message is sent
    through another one, and starts again."""
    gateway = stack.make_service("gateway", 9)
    await asyncio.to_thread(gateway.start)
    await asyncio.to_thread(gateway.wait_ready)
    (tmp_path / "run").mkdir()
    (tmp_path / "run/ready.json").write_text(json.dumps({"gateways": [gateway.url]}))
    tenant = unique("listen")
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    listen = await Listen.start(
        stack.jwt_secret, "--root", str(tmp_path), "listen",
        "--tenant", tenant, "--user", "bob", "--count", "3",
    )  # fmt: skip
    try:
        await listen.until("ready")
        sent = [(await client.send(tenant, "alice", conv["id"], "before")).body]
        await listen.until("messages:new")

        await asyncio.to_thread(gateway.stop)  # SIGTERM: sockets closed 1001
        sent.append((await client.send(tenant, "alice", conv["id"], "while")).body)
        await asyncio.to_thread(gateway.start)
        await asyncio.to_thread(gateway.wait_ready)
        await listen.until("ready")
        sent.append((await client.send(tenant, "alice", conv["id"], "after")).body)
        code, err = await listen.finish()
    finally:
        listen.kill()
        await asyncio.to_thread(gateway.stop)

    assert code == 0, err
    assert listen.messages() == [m["id"] for m in sent]  # each once, in order
    assert "socket closed 1001 (gateway shutting down)" in err
    assert f"since_seq={sent[0]['seq']}" in err
    assert "Traceback" not in err


async def test_an_expired_token_is_replaced_on_reconnect(
    stack: Stack, client: Client
) -> None:
    tenant = unique("listen")
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    listen = await Listen.start(
        stack.jwt_secret, "listen", "--url", stack.gateway_urls[0],
        "--tenant", tenant, "--user", "bob", "--count", "1", "--ttl", "1.5",
    )  # fmt: skip
    try:
        await listen.until("ready")
        await listen.until("ready", timeout=5)  # the second socket
        reply = await client.send(tenant, "alice", conv["id"], "hello")
        code, err = await listen.finish()
    finally:
        listen.kill()

    assert code == 0, err
    assert listen.messages() == [reply.body["id"]]
    assert "socket closed 4001 (token expired)" in err


async def test_a_refused_token_stops_it_with_a_message(stack: Stack) -> None:
    listen = await Listen.start(
        "a-secret-the-gateway-does-not-know-0123456789", "listen",
        "--url", stack.gateway_urls[0], "--tenant", "acme", "--user", "bob",
    )  # fmt: skip
    try:
        code, err = await listen.finish()
    finally:
        listen.kill()

    assert code == 1
    assert "refused the token" in err
    assert "Traceback" not in err


async def test_ctrl_c_ends_it_quietly(stack: Stack) -> None:
    listen = await Listen.start(
        stack.jwt_secret, "listen", "--url", stack.gateway_urls[0],
        "--tenant", unique("listen"), "--user", "bob",
    )  # fmt: skip
    try:
        await listen.until("ready")
        listen.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code, err = await listen.finish()
    finally:
        listen.kill()

    assert code == 130
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err


async def test_no_gateway_at_all_is_an_error_not_a_wait() -> None:
    listen = await Listen.start(
        "s" * 40, "listen", "--url", f"http://127.0.0.1:{free_port()}",
        "--tenant", "acme", "--user", "bob",
    )  # fmt: skip
    try:
        code, err = await listen.finish()
    finally:
        listen.kill()

    assert code == 1
    assert "no connection to" in err
    assert "make run" in err
