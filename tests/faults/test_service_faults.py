"""A service dying mid-flow loses no accepted message and repeats none."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from redis.asyncio import Redis

from libs.devstack.stack import ServiceProcess, Stack
from tests.support import Client, eventually, lift_limits, unique

pytestmark = pytest.mark.slow


async def _revive(proc: ServiceProcess) -> None:
    proc.start()
    await asyncio.to_thread(proc.wait_ready)


async def test_store_killed_while_messages_flow_loses_nothing(
    stack: Stack, client: Client, db: asyncpg.Pool, redis: Redis
) -> None:
    tenant = unique()
    await lift_limits(redis, tenant)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    store = stack.service("store")
    accepted: list[str] = []
    refused: list[int] = []

    async def keep_sending() -> None:
        for i in range(300):
            reply = await client.send(tenant, "alice", conv["id"], f"flow {i}")
            if reply.status == 201:
                accepted.append(reply.body["id"])
            else:
                refused.append(reply.status)
            await asyncio.sleep(0.005)

    sending = asyncio.create_task(keep_sending())
    await asyncio.sleep(0.4)
    store.kill()
    await asyncio.sleep(0.5)
    while_down = await client.list_messages(tenant, "bob", conv["id"])
    await asyncio.sleep(1.0)
    await _revive(store)
    await sending

    async def all_stored() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM messages WHERE conversation_id = $1", conv["id"]
        )
        return count >= len(accepted)

    # An event in flight when the store died comes back after the consumer's
    # ack_wait (10 s); leave room for that and a restart.
    await eventually(all_stored, timeout=40)
    rows = await db.fetch(
        "SELECT id::text, count(*) AS n FROM messages WHERE conversation_id = $1 "
        "GROUP BY id",
        conv["id"],
    )
    assert refused == [], refused  # sends never depend on the store
    assert len(accepted) == 300
    assert {r["id"] for r in rows} == set(accepted)
    assert {r["n"] for r in rows} == {1}
    assert while_down.status == 503
    assert while_down.body["error"]["code"] == "unavailable"
    assert "Retry-After" in while_down.headers


async def test_fanout_killed_while_messages_flow_delivers_each_once(
    stack: Stack, client: Client, redis: Redis
) -> None:
    tenant = unique()
    await lift_limits(redis, tenant)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    bob = await client.ws(tenant, "bob")
    fanout = stack.service("fanout")
    accepted: list[str] = []

    async def keep_sending() -> None:
        for i in range(200):
            reply = await client.send(tenant, "alice", conv["id"], f"flow {i}")
            assert reply.status == 201, reply
            accepted.append(reply.body["id"])
            await asyncio.sleep(0.005)

    sending = asyncio.create_task(keep_sending())
    await asyncio.sleep(0.3)
    fanout.kill()
    await asyncio.sleep(1.0)
    await _revive(fanout)
    await sending

    got = await bob.messages(200, timeout=40)
    assert sorted(m["id"] for m in got) == sorted(accepted)
    assert await bob.quiet(1.0) == []
    await bob.close()


async def test_ingest_down_is_a_503_and_a_retry_with_the_key_lands_once(
    stack: Stack, client: Client, db: asyncpg.Pool
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    ingest = stack.service("ingest")
    ingest.stop()
    try:
        down = await client.send(
            tenant, "alice", conv["id"], "hello", client_msg_id="r1"
        )
    finally:
        await _revive(ingest)

    retried = await client.send(
        tenant, "alice", conv["id"], "hello", client_msg_id="r1"
    )
    again = await client.send(tenant, "alice", conv["id"], "hello", client_msg_id="r1")

    assert down.status == 503
    assert down.body["error"]["code"] == "unavailable"
    assert retried.status == 201
    assert again.body["id"] == retried.body["id"]
    listed = await client.list_messages(tenant, "bob", conv["id"])
    assert [m["id"] for m in listed.body["messages"]] == [retried.body["id"]]
