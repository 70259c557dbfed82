"""While the store is down: what a client sees, and what it must not lose.

The store is stopped once for the module and started again after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import nats
import pytest

from libs.bus.subjects import MESSAGES_STREAM, Subjects
from libs.devstack.stack import Stack
from tests.support import Client, stream_count, unique

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def store_down(stack: Stack) -> AsyncIterator[None]:
    store = stack.service("store")
    await asyncio.to_thread(store.stop)
    try:
        yield
    finally:
        store.start()
        await asyncio.to_thread(store.wait_ready)


async def test_a_resume_without_history_is_closed_1013(
    store_down: None, client: Client
) -> None:
    bob = await client.ws(unique(), "bob", since_seq=0)

    msg = await bob.ws.receive(timeout=10)

    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 1013, msg  # history unavailable: retry shortly
    assert bob.ws.close_code == 1013


async def test_a_reused_key_is_a_409_from_the_stream_alone(
    store_down: None, client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    first_conv = await client.create_conversation(tenant, "alice", ["bob"])
    other_conv = await client.create_conversation(tenant, "alice", ["dave"])

    first = await client.send(tenant, "alice", first_conv["id"], "hi", "k-1")
    elsewhere = await client.send(tenant, "alice", other_conv["id"], "hi", "k-1")
    rewritten = await client.send(tenant, "alice", first_conv["id"], "bye", "k-1")
    retried = await client.send(tenant, "alice", first_conv["id"], "hi", "k-1")

    assert first.status == 201, first  # sends never wait for the store
    for reply in (elsewhere, rewritten):
        assert reply.status == 409, reply
        assert reply.body["error"]["code"] == "client_msg_id_reused"
    assert retried.status == 201
    assert retried.body == first.body
    accepted = Subjects().message_accepted(tenant, other_conv["id"])
    assert await stream_count(nc, MESSAGES_STREAM, accepted) == 0
