"""Messages not yet in the read model are read from the stream itself."""

from __future__ import annotations

import nats
import pytest

from libs.bus.subjects import Subjects
from libs.membership import MembershipDirectory
from services.store.tail import StreamTail, TailTooLong
from tests.support import Client, accepted_event, publish_accepted, unique


async def _publish(nc: nats.NATS, tenant: str, conversation_id: str, body: str) -> int:
    return await publish_accepted(nc, accepted_event(tenant, conversation_id, body))


async def test_the_tail_holds_only_the_users_messages_in_order(
    client: Client, nc: nats.NATS
) -> None:
    tenant, other_tenant = unique(), unique()
    bobs = await client.create_conversation(tenant, "alice", ["bob"])
    not_bobs = await client.create_conversation(tenant, "alice", ["carol"])
    elsewhere = await client.create_conversation(other_tenant, "alice", ["bob"])
    first = await _publish(nc, tenant, bobs["id"], "one")
    await _publish(nc, tenant, not_bobs["id"], "not for bob")
    await _publish(nc, other_tenant, elsewhere["id"], "another tenant's bob")
    last = await _publish(nc, tenant, bobs["id"], "two")
    tail = StreamTail(nc, MembershipDirectory(nc, Subjects()), timeout=2)

    found = await tail.read(tenant, "bob", first, last)

    assert [m.body for m in found] == ["one", "two"]
    assert [m.seq for m in found] == [first, last]
    assert all(m.conversation_id == bobs["id"] for m in found)
    assert await tail.read(tenant, "bob", last + 1, last) == []


async def test_a_tail_too_long_to_read_is_refused(nc: nats.NATS) -> None:
    tail = StreamTail(nc, MembershipDirectory(nc, Subjects()), timeout=2)

    with pytest.raises(TailTooLong):
        await tail.read("t", "u", 1, StreamTail.MAX_EVENTS + 1)
