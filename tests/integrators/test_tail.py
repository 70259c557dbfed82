"""``msgctl integrator add`` and ``msgctl tail``, run as an integrator would."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import nats
from nats.js.errors import NotFoundError

from libs.bus.subjects import MESSAGES_STREAM
from libs.devstack.stack import Stack
from tests.support import Client, unique


async def _msgctl(
    *args: str, env: dict[str, str], timeout: float = 20.0
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.msgctl",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def _integrator_env(stack: Stack, tenant: str) -> dict[str, str]:
    """Credentials as ``msgctl integrator add`` prints them."""
    code, out, err = await _msgctl(
        "--root",
        str(stack.root),
        "integrator",
        "add",
        "--tenant",
        tenant,
        "--name",
        "tail",
        env=dict(os.environ),
    )
    assert code == 0, err
    assert "reloaded" in err
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in out.splitlines()
    )
    assert set(exported) == {"MSG_NATS_USER", "MSG_NATS_PASSWORD"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSG_")}
    return {**env, **exported, "MSG_NATS_URL": stack.urls["MSG_NATS_URL"]}


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


async def _wait_for_consumer(nc: nats.NATS, name: str) -> None:
    for _ in range(100):
        try:
            await nc.jetstream().consumer_info(MESSAGES_STREAM, name)
            return
        except NotFoundError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"consumer {name} never appeared")


async def test_tail_prints_the_tenants_history_in_order_then_live_events(
    stack: Stack, client: Client, nc: nats.NATS
) -> None:
    tenant, other = unique("a"), unique("b")
    env = await _integrator_env(stack, tenant)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    first = await client.send(tenant, "alice", conv["id"], "one")
    later = await client.create_conversation(tenant, "bob", ["carol"])
    second = await client.send(tenant, "bob", later["id"], "two")
    elsewhere = await client.create_conversation(other, "alice", ["bob"])
    await client.send(other, "alice", elsewhere["id"], "not this tenant's")

    code, out, err = await _msgctl(
        "tail", "--tenant", tenant, "--since", "1m", "--count", "4", env=env
    )

    assert code == 0, err
    history = _events(out)
    assert [e["event"]["data"]["id"] for e in history] == [
        conv["id"],
        first.body["id"],
        later["id"],
        second.body["id"],
    ]
    assert [e["stream"] for e in history] == [
        "CONVERSATIONS",
        "MESSAGES",
        "CONVERSATIONS",
        "MESSAGES",
    ]
    assert {e["event"]["tenant"] for e in history} == {tenant}
    assert [e["seq"] for e in history[1::2]] == [first.body["seq"], second.body["seq"]]

    following = asyncio.create_task(
        _msgctl("tail", "--tenant", tenant, "--count", "1", env=env)
    )
    await _wait_for_consumer(nc, env["MSG_NATS_USER"])
    await client.send(other, "alice", elsewhere["id"], "still not this tenant's")
    live = await client.send(tenant, "alice", conv["id"], "live")
    code, out, err = await following

    assert code == 0, err
    assert [e["event"]["data"]["id"] for e in _events(out)] == [live.body["id"]]


async def test_tail_resumes_after_a_message_seq(stack: Stack, client: Client) -> None:
    tenant = unique("a")
    env = await _integrator_env(stack, tenant)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    sent = [await client.send(tenant, "alice", conv["id"], f"m{i}") for i in range(3)]

    code, out, err = await _msgctl(
        "tail",
        "--tenant",
        tenant,
        "--since",
        str(sent[0].body["seq"]),
        "--types",
        "message.accepted",
        "--count",
        "2",
        env=env,
    )

    assert code == 0, err
    assert [e["event"]["data"]["body"] for e in _events(out)] == ["m1", "m2"]


async def test_tail_refuses_what_it_cannot_do(stack: Stack) -> None:
    tenant = unique("a")
    env = await _integrator_env(stack, tenant)

    other = await _msgctl("tail", "--tenant", unique("b"), "--count", "1", env=env)
    bad_since = [
        await _msgctl(
            "tail", "--tenant", tenant, "--since", since, "--count", "1", env=env
        )
        for since in ("yesterday", "2026-01-01T00:00:00")
    ]

    assert other[0] == 1
    assert "may not read" in other[2]
    for code, _, err in bad_since:
        assert code == 1
        assert "--since" in err
