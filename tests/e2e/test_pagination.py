"""Keyset pagination: newest first, no gaps and no repeats across pages,
even when many messages share a timestamp."""

from __future__ import annotations

import base64
import datetime as dt
import random
import string

import nats

from tests.support import Client, accepted_event, publish_accepted, unique


async def _publish_with_shared_timestamps(
    nc: nats.NATS, tenant: str, conversation_id: str, count: int, per_instant: int
) -> list[str]:
    """Accepted events as ingest would publish them, ``per_instant`` of them
    stamped with the very same millisecond."""
    base = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    sent = []
    for i in range(count):
        at = base + dt.timedelta(milliseconds=i // per_instant)
        event = accepted_event(tenant, conversation_id, f"message {i}", at=at)
        await publish_accepted(nc, event)
        sent.append(event.id)
    return sent


async def test_pages_of_200_200_50_with_shared_timestamps(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    sent = await _publish_with_shared_timestamps(
        nc, tenant, conv["id"], 450, per_instant=50
    )

    pages, cursor = [], None
    while True:
        reply = await client.list_messages(
            tenant, "bob", conv["id"], limit=200, cursor=cursor
        )
        assert reply.status == 200, reply
        pages.append(reply.body["messages"])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break

    assert [len(p) for p in pages] == [200, 200, 50]
    listed = [m for page in pages for m in page]
    assert sorted(m["id"] for m in listed) == sorted(sent)
    assert len({m["id"] for m in listed}) == 450
    order = [(dt.datetime.fromisoformat(m["created_at"]), m["seq"]) for m in listed]
    assert order == sorted(order, reverse=True)
    assert len({m["created_at"] for m in listed}) == 9  # really shared instants


async def test_limit_defaults_to_50_and_is_capped_at_200(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    await _publish_with_shared_timestamps(nc, tenant, conv["id"], 230, per_instant=7)

    default = await client.list_messages(tenant, "alice", conv["id"])
    capped = await client.list_messages(tenant, "alice", conv["id"], limit=5000)

    assert len(default.body["messages"]) == 50
    assert len(capped.body["messages"]) == 200
    assert capped.body["next_cursor"] is not None


async def test_a_forged_cursor_is_a_400(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])

    reply = await client.list_messages(
        tenant, "alice", conv["id"], cursor="not-a-cursor"
    )

    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_cursor"


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED = [
    _cursor(b"[0, 9223372036854775808]"),  # seq past PostgreSQL's bigint
    _cursor(b"[0, -1]"),
    _cursor(b"[99999999999999999999, 1]"),  # a time no calendar has
    _cursor(b"[-62135596800000001, 1]"),  # before year 1
    _cursor(b'[0, "a\\u0000b"]'),  # a conversation key with a NUL
    _cursor(b'[0, "c\\n"]'),
    _cursor(b'[0, "' + b"x" * 65 + b'"]'),
    _cursor(b"[0, 1.5]"),
    _cursor(b"[0]"),
    _cursor(b"{}"),
]


def _garbage(rng: random.Random) -> str:
    """A cursor-shaped string that no page ever answered."""
    kind = rng.randrange(4)
    if kind == 0:
        return _cursor(rng.randbytes(rng.randrange(1, 60)))
    if kind == 1:
        big = rng.choice([2**63, 2**64, -(2**63) - 1, 10**30, rng.randrange(-9, 9)])
        key = rng.choice(
            [str(big), '"' + rng.choice(["", "\\u0000", "a b", "é"]) + '"']
        )
        return _cursor(f"[{big}, {key}]".encode())
    if kind == 2:
        alphabet = string.printable + "\u00e9\u200b\x00"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
    return rng.choice(FORGED)[: rng.randrange(1, 30)]


async def test_forged_and_garbage_cursors_are_400s_never_500s(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    token = client.token(tenant, "alice")
    rng = random.Random(20261204)
    cursors = FORGED + [_garbage(rng) for _ in range(150)]

    for cursor in cursors:
        messages = await client.list_messages(
            tenant, "alice", conv["id"], cursor=cursor
        )
        conversations = await client.request(
            "GET",
            "/api/messaging/conversations",
            token=token,
            params={"cursor": cursor},
        )
        for kind, reply in (("messages", messages), ("conversations", conversations)):
            if reply.status != 200:  # a random one may happen to be well formed
                assert reply.status == 400, (kind, cursor, reply)
                assert reply.body["error"]["code"] == "invalid_cursor", reply
        if cursor in FORGED:
            assert (messages.status, conversations.status) == (400, 400), cursor
