"""Presence down: sockets and messages carry on, and when it returns nobody
flaps, even after every lease ran out in the meantime."""

from __future__ import annotations

import asyncio

import pytest

from libs.devstack.stack import Stack
from tests.conftest import TEST_PRESENCE_HEARTBEAT, TEST_PRESENCE_TTL
from tests.support import Client, eventually, metric_value, unique

pytestmark = pytest.mark.slow


async def _statuses(client: Client, tenant: str, *users: str) -> dict[str, str]:
    reply = await client.request(
        "GET",
        "/api/messaging/presence",
        token=client.token(tenant, "alice"),
        params={"user_ids": ",".join(users)},
    )
    assert reply.status == 200, reply
    return {u["user_id"]: u["status"] for u in reply.body["users"]}


async def test_presence_down_longer_than_the_ttl(stack: Stack, client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    alice = await client.ws(tenant, "alice")
    bob = await client.ws(tenant, "bob")
    await alice.presence_of("bob")
    presence = stack.service("presence")

    await asyncio.to_thread(presence.stop)
    try:
        while_down = await client.request(
            "GET",
            "/api/messaging/presence",
            token=client.token(tenant, "alice"),
            params={"user_ids": "bob"},
        )
        carol = await client.ws(tenant, "carol")  # its open is not heard
        sent = await client.send(tenant, "alice", conv["id"], "still here?")
        delivered = await bob.next_event("messages:new")
        await asyncio.sleep(TEST_PRESENCE_TTL + 0.5)  # every lease runs out
    finally:
        presence.start()
        await asyncio.to_thread(presence.wait_ready)

    assert while_down.status == 503
    assert while_down.body["error"]["code"] == "unavailable"
    assert "Retry-After" in while_down.headers
    assert delivered["id"] == sent.body["id"]
    # Heartbeats renew bob's lease and reveal carol's socket; bob never
    # appears to leave.
    updates = [await alice.next_event("presence:update", TEST_PRESENCE_TTL * 3)]
    while updates[-1]["user_id"] != "carol":
        updates.append(await alice.next_event("presence:update", TEST_PRESENCE_TTL))
    later = await alice.quiet(TEST_PRESENCE_HEARTBEAT * 2, "presence:update")
    assert [(u["user_id"], u["status"]) for u in updates] == [("carol", "online")]
    assert later == []
    assert await _statuses(client, tenant, "bob", "carol") == {
        "bob": "online",
        "carol": "online",
    }
    for ws in (alice, bob, carol):
        await ws.close()


async def test_redis_down_is_a_503_and_presence_resumes(
    stack: Stack, client: Client
) -> None:
    if "MSG_REDIS_URL" in stack.external:
        pytest.skip("Redis runs in a container here; only the embedded one is stopped")
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    alice = await client.ws(tenant, "alice")
    bob = await client.ws(tenant, "bob")
    await alice.presence_of("bob")

    await asyncio.to_thread(stack.redis.stop)
    try:
        while_down = await client.request(
            "GET",
            "/api/messaging/presence",
            token=client.token(tenant, "alice"),
            params={"user_ids": "bob"},
        )
        sent = await client.send(tenant, "alice", conv["id"], "no redis needed")
        delivered = await bob.next_event("messages:new")
    finally:
        await asyncio.to_thread(stack.redis.start)
        # Other services share this Redis: let the abuse guard see it again
        # before the next test relies on its overrides.
        guard = stack.service("abuse-guard")

        async def guard_back() -> bool:
            return not await metric_value(
                client.session, guard.url, "messaging_abuse_degraded"
            )

        await eventually(guard_back, timeout=20)

    assert while_down.status == 503
    assert while_down.body["error"]["code"] == "unavailable"
    assert "Retry-After" in while_down.headers
    assert delivered["id"] == sent.body["id"]
    carol = await client.ws(tenant, "carol")
    assert (await alice.presence_of("carol"))["status"] == "online"
    assert await _statuses(client, tenant, "bob", "carol") == {
        "bob": "online",
        "carol": "online",
    }
    for ws in (alice, bob, carol):
        await ws.close()
