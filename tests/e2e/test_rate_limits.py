"""Per-user send limits, end to end: 429s with accurate Retry-After and
RateLimit headers, no burst at a window's edge, limits changed while the
stack runs. Each test sets its own tenant's limits, as an operator would."""

from __future__ import annotations

import asyncio
import json
import math
import sys

import nats
from redis.asyncio import Redis

from libs import limits
from libs.bus.subjects import AUDIT_STREAM, Subjects
from libs.config import Settings
from libs.devstack.stack import Stack
from tests.support import Client, eventually, metric_value, stream_count, unique


async def _set(redis: Redis, tenant: str, **values: int | float) -> None:
    await limits.set_override(redis, tenant, limits.LimitOverride(**values))


async def msgctl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.msgctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_fifty_concurrent_sends_against_a_limit_of_ten(
    stack: Stack, client: Client, redis: Redis, nc: nats.NATS
) -> None:
    tenant = unique()
    await _set(redis, tenant, limit=10, window=60)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    bob = await client.ws(tenant, "bob")
    guard = stack.service("abuse-guard").url
    rejected_before = await metric_value(
        client.session, guard, "messaging_abuse_rejections_total", reason="rate_limited"
    )

    replies = await asyncio.gather(
        *(client.send(tenant, "alice", conv["id"], f"offer {i}") for i in range(50))
    )

    accepted = [r for r in replies if r.status == 201]
    limited = [r for r in replies if r.status == 429]
    assert (len(accepted), len(limited)) == (10, 40)
    for reply in limited:
        assert reply.body["error"]["code"] == "rate_limited"
        wait = int(reply.headers["Retry-After"])
        assert 1 <= wait <= 60
        assert reply.rate_limit() == {"q": 10, "w": 60, "r": 0, "t": wait}
    assert sorted(r.rate_limit()["r"] for r in accepted) == list(range(10))
    assert {r.rate_limit()["q"] for r in accepted} == {10}

    # Refused sends are neither delivered nor stored.
    delivered = await bob.messages(10)
    assert await bob.quiet(0.5) == []
    listed = await client.all_messages(tenant, "bob", conv["id"])
    ids = sorted(r.body["id"] for r in accepted)
    assert sorted(m["id"] for m in delivered) == ids
    assert sorted(m["id"] for m in listed) == ids
    await bob.close()

    # ...but each is counted and kept on the AUDIT stream.
    rejected_subject = Subjects().message_rejected(tenant, conv["id"])

    async def all_audited() -> bool:
        return await stream_count(nc, AUDIT_STREAM, rejected_subject) >= 40

    await eventually(all_audited)
    assert await stream_count(nc, AUDIT_STREAM, rejected_subject) == 40
    rejected_after = await metric_value(
        client.session, guard, "messaging_abuse_rejections_total", reason="rate_limited"
    )
    assert rejected_after - rejected_before == 40


async def test_retry_after_says_when_a_send_fits_again(
    client: Client, redis: Redis
) -> None:
    tenant = unique()
    await _set(redis, tenant, limit=2, window=1)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    clock = asyncio.get_running_loop().time

    before_first = clock()
    first = await client.send(tenant, "alice", conv["id"], "one")
    after_first = clock()
    second = await client.send(tenant, "alice", conv["id"], "two")
    before_third = clock()
    refused = await client.send(tenant, "alice", conv["id"], "three")
    after_third = clock()

    assert [first.status, second.status, refused.status] == [201, 201, 429]
    # A slot frees when the first send leaves the 1 s window: the guard's
    # exact wait lies between what the client's own clock allows.
    wait = refused.body["error"]["retry_after"]
    slack = 0.005
    assert before_first + 1 - after_third - slack <= wait
    assert wait <= after_first + 1 - before_third + slack
    assert refused.headers["Retry-After"] == str(math.ceil(wait))

    await asyncio.sleep(int(refused.headers["Retry-After"]))
    retried = await client.send(tenant, "alice", conv["id"], "three")

    assert retried.status == 201


async def test_no_window_ever_accepts_more_than_the_limit(
    client: Client, redis: Redis
) -> None:
    tenant = unique()
    await _set(redis, tenant, limit=3, window=1)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    clock = asyncio.get_running_loop().time
    accepted: list[tuple[float, float]] = []  # (asked at, answered at)
    statuses = set()

    end = clock() + 2.2
    i = 0
    while clock() < end:
        asked = clock()
        reply = await client.send(tenant, "alice", conv["id"], f"tick {i}")
        statuses.add(reply.status)
        if reply.status == 201:
            accepted.append((asked, clock()))
        else:
            assert int(reply.headers["Retry-After"]) == 1
        i += 1
        await asyncio.sleep(0.01)

    assert statuses == {201, 429}
    assert len(accepted) >= 6  # the limit bounds sends, it does not starve them
    # Any four accepted sends span more than the window: the server accepted
    # the 4th after the 1st had left it, and the client saw at least that.
    for first, fourth in zip(accepted, accepted[3:], strict=False):
        assert fourth[1] - first[0] >= 1.0


async def test_limits_change_while_the_stack_runs(stack: Stack, client: Client) -> None:
    guard = stack.service("abuse-guard")
    assert guard.proc is not None
    pid = guard.proc.pid
    redis_url = ["--redis-url", stack.urls["MSG_REDIS_URL"]]
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])

    default = await client.send(tenant, "alice", conv["id"], "with the defaults")
    code, out, _ = await msgctl(
        "limits", "set", "--tenant", tenant, "--limit", "2", "--window", "60",
        *redis_url,
    )  # fmt: skip
    second = await client.send(tenant, "alice", conv["id"], "second")
    third = await client.send(tenant, "alice", conv["id"], "third")

    defaults = Settings.from_env("test")  # what the stack's services read
    assert default.status == 201
    assert default.rate_limit() == {
        "q": defaults.rate_limit,
        "w": defaults.rate_window,
        "r": defaults.rate_limit - 1,
        "t": defaults.rate_window,
    }
    assert (code, json.loads(out)) == (0, {"limit": 2, "window": 60})
    assert second.status == 201
    assert second.rate_limit()["q"] == 2
    assert third.status == 429

    # One user's own value wins over the tenant's, and goes when cleared.
    await msgctl(
        "limits", "set", "--tenant", tenant, "--user", "alice", "--limit", "5",
        *redis_url,
    )  # fmt: skip
    alices = await client.send(tenant, "alice", conv["id"], "fourth")
    bobs = await client.send(tenant, "bob", conv["id"], "hi")
    await msgctl("limits", "clear", "--tenant", tenant, "--user", "alice", *redis_url)
    cleared = await client.send(tenant, "alice", conv["id"], "fifth")
    code, out, _ = await msgctl("limits", "get", "--tenant", tenant, *redis_url)

    assert alices.status == 201
    alices_limit = alices.rate_limit()
    assert (alices_limit["q"], alices_limit["w"], alices_limit["r"]) == (5, 60, 2)
    assert bobs.rate_limit()["q"] == 2
    assert cleared.status == 429
    assert (code, json.loads(out)) == (0, {"limit": 2, "window": 60})
    assert guard.running
    assert guard.proc.pid == pid  # the same process all along: no restart

    refused = await msgctl(
        "limits", "set", "--tenant", tenant, "--limit", "0", *redis_url
    )  # fmt: skip
    assert refused[0] == 2
    assert "limit" in refused[2]
