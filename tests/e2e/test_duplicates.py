"""Duplicate suppression, end to end: a same-body resend inside the window is
a 409 naming the original, however its whitespace or Unicode form differs;
a client_msg_id retry is not a duplicate; two replicas never both let the
same body through."""

from __future__ import annotations

import asyncio

import msgspec
import nats
from redis.asyncio import Redis

from libs import limits
from libs.bus.subjects import AUDIT_STREAM, MESSAGES_STREAM, Subjects
from libs.devstack.stack import Stack
from libs.schema.events import MessageRejected
from libs.text import body_fingerprint
from tests.support import Client, Reply, eventually, stream_count, unique

ORIGINAL = "Caf\u00e9 au lait at  noon?"  # precomposed é, two spaces


def _is_duplicate_of(reply: Reply, original: Reply) -> bool:
    return (
        reply.status == 409
        and reply.body["error"]["code"] == "duplicate"
        and reply.body["error"]["original_id"] == original.body["id"]
    )


async def test_whitespace_and_unicode_variants_are_duplicates_case_is_not(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    other = await client.create_conversation(tenant, "alice", ["bob"])
    bob = await client.ws(tenant, "bob")
    first = await client.send(tenant, "alice", conv["id"], ORIGINAL)

    variants = [
        ORIGINAL,
        "  Caf\u00e9 au lait at noon?\n",  # trimmed, run collapsed
        "Cafe\u0301\tau\u00a0lait at noon?",  # decomposed é (NFD), tab, NBSP
        "Cafe\u0301 au lait\n\n at noon?",
    ]
    repeats = [await client.send(tenant, "alice", conv["id"], v) for v in variants]
    other_case = await client.send(tenant, "alice", conv["id"], ORIGINAL.upper())
    other_conversation = await client.send(tenant, "alice", other["id"], ORIGINAL)
    other_sender = await client.send(tenant, "bob", conv["id"], ORIGINAL)

    assert first.status == 201
    for reply in repeats:
        assert _is_duplicate_of(reply, first), reply
        assert reply.body["error"]["message"]
    assert other_case.status == 201
    assert other_conversation.status == 201
    assert other_sender.status == 201
    # Only the accepted ones reach bob or the store, each exactly as sent.
    got = await bob.messages(4)
    assert await bob.quiet(0.5) == []
    assert sorted(m["id"] for m in got) == sorted(
        r.body["id"] for r in (first, other_case, other_conversation, other_sender)
    )
    listed = await client.all_messages(tenant, "bob", conv["id"])
    assert sorted(m["body"] for m in listed) == sorted(
        [ORIGINAL, ORIGINAL.upper(), ORIGINAL]
    )

    # Each refusal is audited with the body's hash, never the body.
    subject = Subjects().message_rejected(tenant, conv["id"])

    async def all_audited() -> bool:
        return await stream_count(nc, AUDIT_STREAM, subject) >= len(variants)

    await eventually(all_audited)
    last = await nc.jetstream().get_last_msg(AUDIT_STREAM, subject)
    event = msgspec.json.decode(last.data, type=MessageRejected)
    assert event.data.reason == "duplicate"
    assert event.data.original_id == first.body["id"]
    assert event.data.body_sha256 == body_fingerprint(ORIGINAL)
    assert ORIGINAL.encode() not in last.data
    await bob.close()


async def test_same_body_after_the_window_is_accepted(
    client: Client, redis: Redis
) -> None:
    tenant = unique()
    await limits.set_override(redis, tenant, limits.LimitOverride(duplicate_window=1))
    conv = await client.create_conversation(tenant, "alice", ["bob"])

    first = await client.send(tenant, "alice", conv["id"], "standup?")
    inside = await client.send(tenant, "alice", conv["id"], "standup?")
    await asyncio.sleep(1.1)
    after = await client.send(tenant, "alice", conv["id"], "standup?")

    assert first.status == 201
    assert _is_duplicate_of(inside, first)
    assert after.status == 201
    assert after.body["id"] != first.body["id"]


async def test_a_client_msg_id_retry_answers_the_original(
    client: Client, redis: Redis
) -> None:
    tenant = unique()
    await limits.set_override(redis, tenant, limits.LimitOverride(duplicate_window=1))
    conv = await client.create_conversation(tenant, "alice", ["bob"])

    first = await client.send(tenant, "alice", conv["id"], "ship it", "k-1")
    retry = await client.send(tenant, "alice", conv["id"], "ship it", "k-1")
    new_key = await client.send(tenant, "alice", conv["id"], "ship it", "k-2")
    await asyncio.sleep(1.1)  # past the duplicate window: the key still holds
    late_retry = await client.send(tenant, "alice", conv["id"], "ship it", "k-1")

    assert first.status == 201
    for reply in (retry, late_retry):
        assert reply.status == 201
        assert reply.body == first.body
        assert reply.headers.get("Idempotent-Replayed") == "true"
        assert reply.rate_limit()["r"] == reply.rate_limit()["q"] - 1
    # Another key with the same body is a new send, so a duplicate.
    assert _is_duplicate_of(new_key, first)
    listed = await client.all_messages(tenant, "bob", conv["id"])
    assert [m["id"] for m in listed] == [first.body["id"]]


async def test_identical_sends_at_once_on_two_replicas_make_one_message(
    stack: Stack, client: Client, nc: nats.NATS
) -> None:
    second = stack.make_service("gateway", 2)
    second.start()
    try:
        await asyncio.to_thread(second.wait_ready)
        there = client.at(second.url)
        tenant = unique()
        conv = await client.create_conversation(tenant, "alice", ["bob"])

        rounds = [
            await asyncio.gather(
                client.send(tenant, "alice", conv["id"], f"same instant {i}"),
                there.send(tenant, "alice", conv["id"], f"same instant {i}"),
            )
            for i in range(20)
        ]

        for pair in rounds:
            assert sorted(r.status for r in pair) == [201, 409], pair
            accepted = next(r for r in pair if r.status == 201)
            refused = next(r for r in pair if r.status == 409)
            assert _is_duplicate_of(refused, accepted)
        subject = Subjects().message_accepted(tenant, conv["id"])
        assert await stream_count(nc, MESSAGES_STREAM, subject) == 20
        listed = await client.all_messages(tenant, "bob", conv["id"])
        assert len(listed) == 20
    finally:
        second.stop()
