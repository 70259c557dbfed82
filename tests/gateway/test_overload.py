"""A gateway at its bound of calls in flight refuses more with 503 at once,
and a refused send is not sent; the calls it waits on still complete."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
from redis.asyncio import Redis

from libs.devstack.stack import Stack
from tests.support import Client, eventually, lift_limits, metric_value, unique


async def test_calls_past_the_bound_are_refused_at_once_and_lose_nothing(
    stack: Stack, client: Client, db: asyncpg.Pool, redis: Redis
) -> None:
    gateway = stack.make_service("gateway", 11)
    gateway.env["MSG_GATEWAY_MAX_IN_FLIGHT"] = "2"
    gateway.start()
    ingest = stack.service("ingest")
    assert ingest.proc is not None
    try:
        await asyncio.to_thread(gateway.wait_ready)
        here = client.at(gateway.url)
        tenant = unique()
        await lift_limits(redis, tenant)
        conv = await client.create_conversation(tenant, "alice", ["bob"])

        # A stalled ingest keeps the first two sends waiting at the gateway.
        os.kill(ingest.proc.pid, signal.SIGSTOP)
        try:
            waiting = [
                asyncio.create_task(here.send(tenant, "alice", conv["id"], f"held {i}"))
                for i in range(2)
            ]

            async def both_waiting() -> bool:
                value = await metric_value(
                    client.session, gateway.url, "messaging_gateway_backend_in_flight"
                )
                return value == 2

            await eventually(both_waiting, timeout=5)
            started = time.monotonic()
            refused = await here.send(
                tenant, "alice", conv["id"], "over the bound", client_msg_id="k-over"
            )
            refused_after = time.monotonic() - started
            read_refused = await here.list_messages(tenant, "bob", conv["id"])
        finally:
            os.kill(ingest.proc.pid, signal.SIGCONT)
        held = await asyncio.gather(*waiting)
        retried = await here.send(
            tenant, "alice", conv["id"], "over the bound", client_msg_id="k-over"
        )
        shed = await metric_value(
            client.session,
            gateway.url,
            "messaging_gateway_shed_total",
            reason="in_flight",
        )
    finally:
        gateway.stop()

    assert refused.status == 503, refused
    assert refused.body["error"]["code"] == "overloaded"
    assert refused.headers["Retry-After"] == "1"
    assert refused_after < 1.0  # refused, not queued behind the stalled calls
    assert read_refused.status == 503
    assert read_refused.body["error"]["code"] == "overloaded"
    assert [r.status for r in held] == [201, 201]
    assert retried.status == 201, retried
    assert shed == 2  # the send and the read

    async def bodies() -> list[str]:
        rows = await db.fetch(
            "SELECT body FROM messages WHERE conversation_id = $1", conv["id"]
        )
        return sorted(r["body"] for r in rows)

    expected = ["held 0", "held 1", "over the bound"]

    async def all_stored() -> bool:
        return len(await bodies()) >= len(expected)

    await eventually(all_stored)
    # Once and only once: the refused attempt left nothing behind.
    assert await bodies() == expected
