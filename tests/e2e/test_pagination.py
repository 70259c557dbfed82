"""Keyset pagination: newest first, no gaps and no repeats across pages,
even when many messages share a timestamp."""

from __future__ import annotations

import datetime as dt

import msgspec
import nats

from libs import ids
from libs.bus.subjects import Subjects
from libs.schema.events import AcceptedMessage, MessageAccepted
from tests.support import Client, unique


async def _publish_with_shared_timestamps(
    nc: nats.NATS, tenant: str, conversation_id: str, count: int, per_instant: int
) -> list[str]:
    """Accepted events as ingest would publish them, ``per_instant`` of them
    stamped with the very same millisecond."""
    js = nc.jetstream()
    base = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    subject = Subjects().message_accepted(tenant, conversation_id)
    sent = []
    for i in range(count):
        at = base + dt.timedelta(milliseconds=i // per_instant)
        message_id = ids.uuid7()
        event = MessageAccepted(
            id=message_id,
            tenant=tenant,
            time=at,
            data=AcceptedMessage(
                id=message_id,
                conversation_id=conversation_id,
                sender_id="alice",
                body=f"message {i}",
                created_at=at,
            ),
        )
        await js.publish(
            subject, msgspec.json.encode(event), headers={"Nats-Msg-Id": message_id}
        )
        sent.append(message_id)
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
