"""Presence end to end: sockets on gateways, presence in Redis, updates on
peers' sockets, and the status endpoint."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import nats

from libs.bus.subjects import PRESENCE_STREAM, Subjects
from libs.devstack.stack import Stack
from tests.conftest import TEST_PRESENCE_GRACE, TEST_PRESENCE_TTL
from tests.support import Client, metric_value, unique

# Room for a flush, a sweep and the trip over NATS on a busy test machine.
MARGIN = 1.5
# How long past the grace an offline that should not happen could still come:
# the close's report (0.15 s), a sweep (0.25 s), the relay.
QUIET = TEST_PRESENCE_GRACE + 0.75


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _presence(client: Client, tenant: str, asker: str, *users: str) -> dict:
    reply = await client.request(
        "GET",
        "/api/messaging/presence",
        token=client.token(tenant, asker),
        params={"user_ids": ",".join(users)},
    )
    assert reply.status == 200, reply
    return {u["user_id"]: u for u in reply.body["users"]}


async def test_connect_and_disconnect_reach_a_peer(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    alice = await client.ws(tenant, "alice")

    bob = await client.ws(tenant, "bob")
    online = await alice.presence_of("bob")
    while_online = await _presence(client, tenant, "alice", "bob")
    await bob.close()
    offline = await alice.presence_of("bob")

    assert set(online) == {"user_id", "status", "at"}
    assert online["status"] == "online"
    assert offline["status"] == "offline"
    assert _time(offline["at"]) > _time(online["at"])
    assert while_online["bob"]["status"] == "online"
    after = await _presence(client, tenant, "alice", "bob")
    assert after["bob"]["status"] == "offline"
    assert _time(after["bob"]["last_seen"]) <= _time(offline["at"])
    event = await _last_event(nc, tenant, "bob")
    grace = _time(event["data"]["at"]) - _time(event["data"]["last_seen"])
    assert grace.total_seconds() == TEST_PRESENCE_GRACE  # offline once it ended
    await alice.close()


async def test_nobody_gets_their_own_presence_or_another_tenants(
    client: Client,
) -> None:
    tenant, other = unique(), unique()
    alice = await client.ws(tenant, "alice")
    outsider = await client.ws(other, "mallory")

    bob = await client.ws(tenant, "bob")
    await alice.presence_of("bob")

    about_bob = [
        f
        for f in await bob.quiet(0.5, "presence:update")
        if f["data"]["user_id"] == "bob"
    ]
    assert about_bob == []
    assert await outsider.quiet(0.5, "presence:update") == []
    theirs = await _presence(client, other, "mallory", "bob")
    assert (theirs["bob"]["status"], theirs["bob"]["last_seen"]) == ("offline", None)
    for ws in (alice, outsider, bob):
        await ws.close()


async def test_two_devices_stay_online_until_the_last_one_leaves(
    client: Client,
) -> None:
    tenant = unique()
    alice = await client.ws(tenant, "alice")
    phone = await client.ws(tenant, "bob")
    await alice.presence_of("bob")
    laptop = await client.ws(tenant, "bob")

    await phone.close()
    while_one_left = await alice.quiet(QUIET, "presence:update")
    status = await _presence(client, tenant, "alice", "bob")
    await laptop.close()
    offline = await alice.presence_of("bob")

    assert while_one_left == []
    assert status["bob"]["status"] == "online"
    assert offline["status"] == "offline"
    await alice.close()


async def test_a_fast_reconnect_is_no_flap(client: Client) -> None:
    tenant = unique()
    alice = await client.ws(tenant, "alice")
    bob = await client.ws(tenant, "bob")
    await alice.presence_of("bob")

    await bob.close()
    bob = await client.ws(tenant, "bob")
    updates = await alice.quiet(QUIET, "presence:update")

    assert updates == []
    status = await _presence(client, tenant, "alice", "bob")
    assert status["bob"]["status"] == "online"
    await asyncio.gather(alice.close(), bob.close())


async def test_users_of_a_killed_gateway_go_offline_within_the_ttl(
    stack: Stack, client: Client, nc: nats.NATS
) -> None:
    doomed = stack.make_service("gateway", 5)
    doomed.start()
    try:
        await asyncio.to_thread(doomed.wait_ready)
        tenant = unique()
        alice = await client.ws(tenant, "alice")
        carol = await client.at(doomed.url).ws(tenant, "carol")
        await alice.presence_of("carol")

        doomed.kill()  # SIGKILL: no closes reported, no goodbye
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        offline = await alice.presence_of("carol", timeout=TEST_PRESENCE_TTL * 3)
        took = loop.time() - killed_at

        assert offline["status"] == "offline"
        assert took <= TEST_PRESENCE_TTL + MARGIN
        status = await _presence(client, tenant, "alice", "carol")
        assert status["carol"]["status"] == "offline"
        event = await _last_event(nc, tenant, "carol")
        assert event["data"]["status"] == "offline"
        lease = _time(event["data"]["at"]) - _time(event["data"]["last_seen"])
        assert lease.total_seconds() == TEST_PRESENCE_TTL  # expired, not closed
        await asyncio.gather(alice.close(), carol.close())
    finally:
        doomed.kill()


async def test_a_stopping_gateway_reports_its_sockets_closed(
    stack: Stack, client: Client, nc: nats.NATS
) -> None:
    leaving = stack.make_service("gateway", 6)
    leaving.start()
    try:
        await asyncio.to_thread(leaving.wait_ready)
        tenant = unique()
        alice = await client.ws(tenant, "alice")
        dave = await client.at(leaving.url).ws(tenant, "dave")
        await alice.presence_of("dave")

        await asyncio.to_thread(leaving.stop)  # SIGTERM
        offline = await alice.presence_of("dave")

        assert offline["status"] == "offline"
        event = await _last_event(nc, tenant, "dave")
        assert event["data"]["status"] == "offline"
        grace = _time(event["data"]["at"]) - _time(event["data"]["last_seen"])
        assert grace.total_seconds() < TEST_PRESENCE_TTL  # closed, not expired
        await asyncio.gather(alice.close(), dave.close())
    finally:
        leaving.kill()


async def test_presence_latency_is_measured_at_the_peers_socket(
    client: Client,
) -> None:
    tenant = unique()
    before = await metric_value(
        client.session,
        client.base_url,
        "messaging_presence_update_latency_seconds_count",
    )
    alice = await client.ws(tenant, "alice")
    carol = await client.ws(tenant, "carol")

    bob = await client.ws(tenant, "bob")
    await alice.presence_of("bob")
    await carol.presence_of("bob")

    after = await metric_value(
        client.session,
        client.base_url,
        "messaging_presence_update_latency_seconds_count",
    )
    assert after - before >= 3  # carol to alice, bob to alice and to carol
    for ws in (alice, carol, bob):
        await ws.close()


async def _last_event(nc: nats.NATS, tenant: str, user: str) -> dict:
    """The user's newest presence.changed in the PRESENCE stream, as
    integrators read it."""
    subject = Subjects().presence_changed(tenant, user)
    msg = await nc.jetstream().get_last_msg(PRESENCE_STREAM, subject)
    event = json.loads(msg.data)
    assert msg.headers is not None
    assert msg.headers.get("Nats-Msg-Id") == event["id"]
    return event
