"""A retry with the same client_msg_id answers the same message, never a
second one: right away, concurrently, and after the duplicate window."""

from __future__ import annotations

import asyncio

import asyncpg
import nats

from libs.bus.subjects import MESSAGES_STREAM, Subjects
from tests.conftest import TEST_DUPLICATE_WINDOW
from tests.support import Client, stream_count, unique


async def _stored_events(nc: nats.NATS, tenant: str, conversation_id: str) -> int:
    subject = Subjects().message_accepted(tenant, conversation_id)
    return await stream_count(nc, MESSAGES_STREAM, subject)


async def test_retry_answers_the_original(client: Client, db: asyncpg.Pool) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])

    first = await client.send(tenant, "alice", conv["id"], "once", client_msg_id="k1")
    again = await client.send(tenant, "alice", conv["id"], "once", client_msg_id="k1")

    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = await client.send(tenant, "bob", conv["id"], "once", client_msg_id="k1")
    assert other.body["id"] != first.body["id"]  # keys are per sender


async def test_concurrent_retries_make_one_message(
    client: Client, nc: nats.NATS, db: asyncpg.Pool
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    bob = await client.ws(tenant, "bob")

    replies = await asyncio.gather(
        *(
            client.send(tenant, "alice", conv["id"], "burst", client_msg_id="same")
            for _ in range(20)
        )
    )

    assert {r.status for r in replies} == {201}
    assert len({(r.body["id"], r.body["seq"]) for r in replies}) == 1
    assert len(await bob.messages(1)) == 1
    assert await bob.quiet(0.5) == []
    assert await _stored_events(nc, tenant, conv["id"]) == 1
    listed = await client.list_messages(tenant, "bob", conv["id"])
    assert len(listed.body["messages"]) == 1
    await bob.close()


async def test_retry_after_the_duplicate_window_still_answers_the_original(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    first = await client.send(
        tenant, "alice", conv["id"], "late", client_msg_id="k-late"
    )

    await asyncio.sleep(float(TEST_DUPLICATE_WINDOW) + 1.0)
    again = await client.send(
        tenant, "alice", conv["id"], "late", client_msg_id="k-late"
    )

    assert again.status == 201
    assert again.body == first.body
    assert await _stored_events(nc, tenant, conv["id"]) == 1


async def test_a_key_reused_for_another_conversation_or_body_is_a_409(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    first_conv = await client.create_conversation(tenant, "alice", ["bob"])
    other_conv = await client.create_conversation(tenant, "alice", ["dave"])
    first = await client.send(tenant, "alice", first_conv["id"], "hi", "k-1")
    # Read once, so the store has it: the lookup path, not JetStream's window.
    await client.list_messages(tenant, "alice", first_conv["id"])

    elsewhere = await client.send(tenant, "alice", other_conv["id"], "hi", "k-1")
    rewritten = await client.send(tenant, "alice", first_conv["id"], "bye", "k-1")
    retried = await client.send(tenant, "alice", first_conv["id"], "hi", "k-1")

    for reply in (elsewhere, rewritten):
        assert reply.status == 409, reply
        assert reply.body["error"]["code"] == "client_msg_id_reused"
        assert reply.body["error"]["original_id"] == first.body["id"]
        assert "Idempotent-Replayed" not in reply.headers
    assert retried.status == 201
    assert retried.body == first.body
    assert retried.headers.get("Idempotent-Replayed") == "true"
    dave = await client.list_messages(tenant, "dave", other_conv["id"])
    bob = await client.list_messages(tenant, "bob", first_conv["id"])
    assert dave.body["messages"] == []
    assert [m["body"] for m in bob.body["messages"]] == ["hi"]
    assert await _stored_events(nc, tenant, other_conv["id"]) == 0
