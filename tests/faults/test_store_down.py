"""While the store is down: what a client sees, and what it must not lose.

The store is stopped once for the module and started again after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from libs.devstack.stack import Stack
from tests.support import Client, unique

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
