"""A message from one user reaches another live, and is listed, end to end."""

from __future__ import annotations

import asyncio

from libs.devstack.stack import Stack
from tests.support import Client, unique


async def test_message_reaches_member_socket_and_listing(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"], title="lunch")
    bob = await client.ws(tenant, "bob")

    sent = await client.send(tenant, "alice", conv["id"], "hello bob 👋")

    assert sent.status == 201
    live = await bob.next_event("messages:new")
    assert live == sent.body
    assert live["sender_id"] == "alice"
    assert live["body"] == "hello bob 👋"
    listed = await client.list_messages(tenant, "bob", conv["id"])
    assert listed.status == 200
    assert listed.body["messages"] == [sent.body]
    await bob.close()


async def test_conversation_is_listed_and_readable_right_after_creation(
    client: Client,
) -> None:
    tenant = unique()

    conv = await client.create_conversation(tenant, "alice", ["bob", "carol"], "plans")

    assert sorted(conv["members"]) == ["alice", "bob", "carol"]
    mine = await client.request(
        "GET", "/api/messaging/conversations", token=client.token(tenant, "carol")
    )
    assert [c["id"] for c in mine.body["conversations"]] == [conv["id"]]
    one = await client.request(
        "GET",
        f"/api/messaging/conversations/{conv['id']}",
        token=client.token(tenant, "bob"),
    )
    assert one.status == 200
    assert one.body["title"] == "plans"


async def test_send_right_after_create_and_get_right_after_send(client: Client) -> None:
    tenant = unique()
    for i in range(20):
        conv = await client.create_conversation(tenant, "alice", ["bob"])

        sent = await client.send(tenant, "alice", conv["id"], f"first {i}")
        listed = await client.list_messages(tenant, "bob", conv["id"])

        assert sent.status == 201, sent
        assert [m["id"] for m in listed.body["messages"]] == [sent.body["id"]]


async def test_every_socket_of_every_member_gets_it(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob", "carol"])
    sockets = [
        await client.ws(tenant, "bob"),
        await client.ws(tenant, "bob"),
        await client.ws(tenant, "carol"),
        await client.ws(tenant, "alice"),
    ]

    sent = await client.send(tenant, "alice", conv["id"], "to everyone")

    for socket in sockets:
        assert (await socket.next_event("messages:new"))["id"] == sent.body["id"]
    outsider = await client.ws(tenant, "mallory")
    await client.send(tenant, "alice", conv["id"], "still private")
    assert await outsider.quiet(0.5) == []
    for socket in [*sockets, outsider]:
        await socket.close()


async def test_two_gateway_replicas(stack: Stack, client: Client) -> None:
    second = stack.make_service("gateway", 1)
    second.start()
    try:
        second.wait_ready()
        other = client.at(second.url)
        tenant = unique()
        conv = await client.create_conversation(tenant, "alice", ["bob"])
        bob = await other.ws(tenant, "bob")
        alice = await client.ws(tenant, "alice")

        sent = await client.send(tenant, "alice", conv["id"], "across replicas")
        reply = await other.send(tenant, "bob", conv["id"], "and back")

        assert (await bob.next_event("messages:new"))["id"] == sent.body["id"]
        got = await alice.messages(2)
        assert [m["id"] for m in got] == [sent.body["id"], reply.body["id"]]
        listed = await other.list_messages(tenant, "alice", conv["id"])
        assert [m["body"] for m in listed.body["messages"]] == [
            "and back",
            "across replicas",
        ]
        await asyncio.gather(bob.close(), alice.close())
    finally:
        second.stop()
