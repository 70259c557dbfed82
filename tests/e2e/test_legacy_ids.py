"""A conversation written before ids were checked to their true end may hold
a member such as ``"bob\\n"``, which no NATS subject can carry. It must not
poison the conversation: the valid members are served, and the bad id is
left out."""

from __future__ import annotations

import nats
from nats.js.errors import NotFoundError

from libs.bus.subjects import DEADLETTER_STREAM, Subjects
from tests.support import Client, publish_conversation, unique

LEGACY_MEMBER = "bob\n"


async def _legacy_conversation(nc: nats.NATS, tenant: str) -> str:
    """A conversation.created event as an earlier version published it."""
    return await publish_conversation(
        nc, tenant, ["alice", LEGACY_MEMBER, "carol"], "from an earlier version"
    )


async def _dead_letters(nc: nats.NATS, tenant: str) -> list[str]:
    js = nc.jetstream()
    parked = []
    for durable in ("store", "fanout"):
        try:
            await js.get_last_msg(
                DEADLETTER_STREAM, Subjects().dead_letter(durable, tenant)
            )
        except NotFoundError:
            continue
        parked.append(durable)
    return parked


async def test_a_stored_member_id_ending_in_a_newline_poisons_nothing(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    conv = await _legacy_conversation(nc, tenant)
    carol = await client.ws(tenant, "carol")

    sent = await client.send(tenant, "alice", conv, "still delivered")
    live = await carol.next_event("messages:new")
    listed = await client.list_messages(tenant, "carol", conv)
    one = await client.request(
        "GET",
        f"/api/messaging/conversations/{conv}",
        token=client.token(tenant, "carol"),
    )
    mine = await client.request(
        "GET", "/api/messaging/conversations", token=client.token(tenant, "carol")
    )

    assert sent.status == 201, sent
    assert live["id"] == sent.body["id"]
    assert [m["id"] for m in listed.body["messages"]] == [sent.body["id"]]
    assert one.status == 200, one
    assert one.body["members"] == ["alice", "carol"]
    assert mine.status == 200, mine
    assert [c["id"] for c in mine.body["conversations"]] == [conv]
    assert await carol.quiet(0.5) == []  # once, not again on a retry
    assert await _dead_letters(nc, tenant) == []
    await carol.close()
