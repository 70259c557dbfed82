"""The abuse guard's dependencies failing mid-run, with every service a
process: Redis stopped (the guard degrades to memory), the guard itself
down (ingest accepts unchecked), and a publish failing after the guard
allowed the send (the guard forgets it). None of them is a 500, and no
accepted message is lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from redis.asyncio import Redis

from libs import limits
from libs.bus.subjects import MESSAGES_STREAM
from libs.devstack.servers import RedisServer, free_port
from libs.devstack.stack import ServiceProcess, Stack
from tests.support import Client, eventually, metric_value, unique

pytestmark = pytest.mark.slow


def _log_events(path: Path) -> Iterator[dict]:
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def _logged(path: Path, event: str, level: str) -> bool:
    return any(
        e.get("event") == event and e.get("level") == level for e in _log_events(path)
    )


@asynccontextmanager
async def _stopped(proc: ServiceProcess) -> AsyncIterator[None]:
    """``proc`` stopped for the block, and running again after it."""
    proc.stop()
    try:
        yield
    finally:
        proc.start()
        await asyncio.to_thread(proc.wait_ready)


async def test_redis_stopped_mid_run_degrades_to_memory_and_comes_back(
    stack: Stack, client: Client
) -> None:
    # The guard gets a Redis of its own, so stopping it touches nothing else.
    redis_server = RedisServer(stack.root / unique("guard-redis-"), free_port())
    replica = stack.make_service("abuse-guard", 5)
    replica.env["MSG_REDIS_URL"] = redis_server.url
    tenant = unique()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    async with _stopped(stack.service("abuse-guard")):
        try:
            redis_server.start()
            replica.start()
            await asyncio.to_thread(replica.wait_ready)
            await limits.set_override(
                redis, tenant, limits.LimitOverride(limit=3, window=60)
            )
            conv = await client.create_conversation(tenant, "alice", ["bob"])

            before = await client.send(tenant, "alice", conv["id"], "before")
            redis_server.stop()
            during = [
                await client.send(tenant, "alice", conv["id"], f"during {i}")
                for i in range(4)
            ]
            repeat = await client.send(tenant, "alice", conv["id"], "during 0")
            degraded = await metric_value(
                client.session, replica.url, "messaging_abuse_degraded"
            )
            listed = await client.all_messages(tenant, "bob", conv["id"])

            redis_server.start()

            async def recovered() -> bool:
                gauge = await metric_value(
                    client.session, replica.url, "messaging_abuse_degraded"
                )
                return gauge == 0

            await eventually(recovered)
            after = await client.send(tenant, "alice", conv["id"], "after")
        finally:
            await redis.aclose()
            replica.stop()
            redis_server.stop()

    assert before.status == 201
    # As README.md says: the same rules, from this replica's memory, with the
    # limits Redis last gave (3 per 60 s), counted afresh from the outage.
    assert [r.status for r in during] == [201, 201, 201, 429]
    assert during[3].rate_limit()["q"] == 3
    assert 1 <= int(during[3].headers["Retry-After"]) <= 60
    assert repeat.status == 409
    assert repeat.body["error"]["original_id"] == during[0].body["id"]
    assert degraded == 1
    assert _logged(replica.log_path, "abuse.degraded", "error")
    # Every accepted send is stored; none of the refused ones.
    assert sorted(m["id"] for m in listed) == sorted(
        r.body["id"] for r in [before, *during[:3]]
    )
    # Back on Redis, which still counts the send from before the outage.
    assert _logged(replica.log_path, "abuse.recovered", "info")
    assert after.status == 201
    assert after.rate_limit()["r"] == 3 - 2


async def test_guard_down_means_sends_go_through_unchecked(
    stack: Stack, client: Client
) -> None:
    ingest = stack.service("ingest")
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    unchecked_before = await metric_value(
        client.session, ingest.url, "messaging_ingest_abuse_unchecked_total"
    )

    async with _stopped(stack.service("abuse-guard")):
        sent = [
            await client.send(tenant, "alice", conv["id"], "while the guard is down")
            for _ in range(2)
        ]
    unchecked_after = await metric_value(
        client.session, ingest.url, "messaging_ingest_abuse_unchecked_total"
    )
    checked = await client.send(tenant, "alice", conv["id"], "guard is back")

    # Fail open: accepted and stored, with no RateLimit headers to give...
    assert [r.status for r in sent] == [201, 201]
    assert "RateLimit" not in sent[0].headers
    listed = await client.all_messages(tenant, "bob", conv["id"])
    assert {m["id"] for m in listed} >= {r.body["id"] for r in sent}
    # ...counted, and logged as a lost dependency.
    assert unchecked_after - unchecked_before == 2
    assert _logged(ingest.log_path, "abuse.unchecked", "error")
    assert checked.status == 201
    assert "RateLimit" in checked.headers


async def test_a_send_that_could_not_be_made_durable_is_forgotten_by_the_guard(
    stack: Stack, client: Client, redis: Redis, nc: nats.NATS
) -> None:
    tenant = unique()
    await limits.set_override(redis, tenant, limits.LimitOverride(limit=1, window=60))
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    body = "a long thought " * 40  # an event of about 1 KB
    js = nc.jetstream()
    config = (await js.stream_info(MESSAGES_STREAM)).config

    # MESSAGES refuses big events for a moment: the guard has allowed the
    # send, but JetStream will not take it.
    await js.update_stream(config.evolve(max_msg_size=512))
    try:
        failed = await client.send(tenant, "alice", conv["id"], body)
    finally:
        await js.update_stream(config)
    resent = await client.send(tenant, "alice", conv["id"], body)

    assert failed.status == 503
    assert failed.body["error"]["code"] == "unavailable"
    assert _logged(stack.service("ingest").log_path, "publish.failed", "error")
    # Neither a duplicate of a message that does not exist, nor over a limit
    # of one because of a send that never happened.
    assert resent.status == 201, resent
    assert resent.rate_limit()["r"] == 0
    listed = await client.all_messages(tenant, "bob", conv["id"])
    assert [m["id"] for m in listed] == [resent.body["id"]]
