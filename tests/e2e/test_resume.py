"""Reconnecting with since_seq replays what was missed, in order, once."""

from __future__ import annotations

from redis.asyncio import Redis

from tests.support import Client, lift_limits, unique


async def test_reconnect_with_since_seq_gets_each_missed_message_once(
    client: Client, redis: Redis
) -> None:
    tenant = unique()
    await lift_limits(redis, tenant)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    other = await client.create_conversation(tenant, "carol", ["bob"])
    not_bobs = await client.create_conversation(tenant, "alice", ["carol"])
    bob = await client.ws(tenant, "bob")
    first = await client.send(tenant, "alice", conv["id"], "before the drop")
    seen = await bob.next_event("messages:new")
    await bob.close()

    missed = []
    for i in range(30):
        conversation, sender = (conv, "alice") if i % 3 else (other, "carol")
        reply = await client.send(tenant, sender, conversation["id"], f"missed {i}")
        missed.append(reply.body)
        await client.send(tenant, "alice", not_bobs["id"], f"not for bob {i}")
    bob = await client.ws(tenant, "bob", since_seq=seen["seq"])
    replayed = await bob.messages(30)
    live = await client.send(tenant, "alice", conv["id"], "after the return")

    assert seen["id"] == first.body["id"]
    assert [m["id"] for m in replayed] == [m["id"] for m in missed]
    assert [m["seq"] for m in replayed] == sorted(m["seq"] for m in replayed)
    assert (await bob.next_event("messages:new"))["id"] == live.body["id"]
    assert await bob.quiet(0.5) == []  # nothing twice
    await bob.close()


async def test_since_seq_zero_replays_everything(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    sent = [
        (await client.send(tenant, "alice", conv["id"], f"m{i}")).body for i in range(5)
    ]

    bob = await client.ws(tenant, "bob", since_seq=0)

    got = await bob.messages(5)
    assert [m["id"] for m in got] == [m["id"] for m in sent]
    assert await bob.quiet(0.3) == []
    await bob.close()


async def test_since_seq_must_be_a_non_negative_integer(client: Client) -> None:
    for bad in ("-1", "abc"):
        reply = await client.request(
            "GET",
            "/api/messaging/ws",
            token=client.token(unique(), "bob"),
            params={"since_seq": bad},
        )
        assert reply.status == 400
        assert reply.body["error"]["code"] == "invalid_request"
