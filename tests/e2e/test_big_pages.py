"""Pages whose items are big answer all the same: a page holds what fits
under the store's byte budget (well below NATS's 1 MB max_payload), and its
cursor carries on from the last item it holds, so paging always ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support import Client, lift_limits, unique

MAX_PAYLOAD = 1024 * 1024


async def _fill(
    client: Client, tenant: str, conversation_id: str, count: int, filler: str
) -> list[str]:
    """``count`` sends of 4,000 code points each; their ids, oldest first."""
    slots = asyncio.Semaphore(8)

    async def one(i: int) -> tuple[int, str]:
        async with slots:
            body = f"{i:03d}" + filler * 3997
            reply = await client.send(tenant, "alice", conversation_id, body)
        assert reply.status == 201, reply
        return reply.body["seq"], reply.body["id"]

    sent = await asyncio.gather(*(one(i) for i in range(count)))
    return [message_id for _, message_id in sorted(sent)]


async def _pages(
    client: Client, path: str, token: str, key: str, params: dict[str, str]
) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        reply = await client.request("GET", path, token=token, params=query)
        assert reply.status == 200, reply
        assert len(json.dumps(reply.body, ensure_ascii=False).encode()) < MAX_PAYLOAD
        pages.append(reply.body[key])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "paging does not end"


@pytest.mark.parametrize(
    ("count", "filler", "limit"),
    [
        (60, "\x01", None),  # JSON escapes each as \u0001: 24 KB a message
        (130, "ж", "200"),  # two bytes a character: 8 KB a message
    ],
    ids=["control-characters", "cyrillic"],
)
async def test_a_page_of_big_messages_answers_and_pages_to_the_end(
    client: Client, redis: Redis, count: int, filler: str, limit: str | None
) -> None:
    tenant = unique()
    await lift_limits(redis, tenant)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    sent = await _fill(client, tenant, conv["id"], count, filler)

    params = {"conversation_id": conv["id"]}
    if limit is not None:
        params["limit"] = limit
    pages = await _pages(
        client, "/api/messaging", client.token(tenant, "bob"), "messages", params
    )

    assert len(pages) > 1  # cut by size, not by count
    assert all(pages)
    listed = [m["id"] for page in pages for m in page]
    assert listed == sent[::-1]  # newest first, each once


async def test_resuming_over_big_messages_replays_them_all_then_goes_live(
    client: Client, redis: Redis
) -> None:
    tenant = unique()
    await lift_limits(redis, tenant)
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    sent = await _fill(client, tenant, conv["id"], 60, "\x01")

    bob = await client.ws(tenant, "bob", since_seq=0)
    replayed = await bob.messages(60, timeout=30)
    await bob.next_event("ready")
    live = await client.send(tenant, "alice", conv["id"], "and now live")

    assert [m["id"] for m in replayed] == sent
    assert (await bob.next_event("messages:new"))["id"] == live.body["id"]
    await bob.close()


async def test_conversations_with_a_thousand_long_member_ids_list_page_by_page(
    client: Client,
) -> None:
    tenant = unique()
    created = []
    for c in range(20):
        members = ["victim"] + [f"{c:02d}{'x' * 58}{i:04d}" for i in range(899)]
        created.append(await client.create_conversation(tenant, "attacker", members))
    token = client.token(tenant, "victim")

    first = await client.request("GET", "/api/messaging/conversations", token=token)
    pages = await _pages(
        client, "/api/messaging/conversations", token, "conversations", {}
    )
    one = await client.request(
        "GET", f"/api/messaging/conversations/{created[0]['id']}", token=token
    )

    assert first.status == 200, first
    assert len(pages) > 1
    listed = [c["id"] for page in pages for c in page]
    assert sorted(listed) == sorted(c["id"] for c in created)
    assert len(set(listed)) == 20
    assert one.status == 200, one
    assert len(one.body["members"]) == 901  # and the creator
