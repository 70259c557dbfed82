"""Two replicas of every service: they share the work, sockets on both
gateways get their messages, and losing one replica of each under load
loses nothing and repeats nothing.

This module runs its own stack (its own NATS, PostgreSQL and Redis), so the
session stack's consumers do not take part.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis

from libs.devstack.stack import SERVICES, Ports, Stack
from tests.support import (
    Client,
    WsClient,
    eventually,
    lift_limits,
    metric_value,
    unique,
)

pytestmark = pytest.mark.slow

USERS = [f"u{i}" for i in range(8)]


@pytest.fixture(scope="module")
def scaled() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="msgscale-"))
    stack = Stack(root, Ports.free(), scale=2, jwt_secret=secrets.token_urlsafe(48))
    try:
        stack.start_infra()
        stack.bootstrap()
        stack.start_services()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gateways(scaled: Stack, http: aiohttp.ClientSession) -> list[Client]:
    return [Client(url, scaled.jwt_secret, http) for url in scaled.gateway_urls]


@pytest.fixture
async def tenant(scaled: Stack) -> str:
    name = unique()
    redis = Redis.from_url(scaled.urls["MSG_REDIS_URL"], decode_responses=True)
    await lift_limits(redis, name)
    await redis.aclose()
    return name


async def _conversations(client: Client, tenant: str) -> list[dict]:
    """Overlapping conversations, so users get messages from several."""
    pairs = [USERS[i : i + 3] for i in range(0, len(USERS), 2)]
    convs = []
    for members in [*pairs, [USERS[0], USERS[-1]]]:
        convs.append(await client.create_conversation(tenant, members[0], members[1:]))
    return convs


class Reader:
    """One user's socket, that follows its user to the other gateway when
    its own goes away, resuming by the highest seq it has seen."""

    def __init__(
        self, user: str, clients: list[Client], home: int, tenant: str
    ) -> None:
        self.user = user
        self.clients = clients
        self.home = home
        self.tenant = tenant
        self.got: list[dict] = []
        self.moves = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        socket = await self.clients[self.home].ws(self.tenant, self.user)
        self._task = asyncio.create_task(self._follow(socket))

    async def _follow(self, socket: WsClient) -> None:
        while not self._stop.is_set():
            try:
                frame = await socket.next_frame(timeout=0.5)
            except TimeoutError:
                continue
            except (ConnectionError, aiohttp.ClientError):
                socket = await self._move()
                continue
            if frame["event"] == "messages:new":
                self.got.append(frame["data"])
        await socket.close()

    async def _move(self) -> WsClient:
        self.moves += 1
        other = self.clients[1 - self.home]
        since = max((m["seq"] for m in self.got), default=0)
        while True:
            try:
                return await other.ws(self.tenant, self.user, since_seq=since)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


async def _send(
    clients: list[Client], tenant: str, conv: dict, n: int, key: str
) -> dict | None:
    """A client that retries with the same client_msg_id on the other
    gateway when one fails, as a real one would."""
    sender = conv["members"][n % len(conv["members"])]
    for attempt in range(20):
        client = clients[(n + attempt) % len(clients)]
        try:
            reply = await client.send(
                tenant, sender, conv["id"], f"m{n}", client_msg_id=key
            )
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.1)
            continue
        if reply.status == 201:
            return reply.body
        assert reply.status in (503, 504), reply
        await asyncio.sleep(0.2)
    return None


def _expected(convs: list[dict], sent: list[dict]) -> dict[str, list[str]]:
    members = {c["id"]: c["members"] for c in convs}
    out: dict[str, list[str]] = {u: [] for u in USERS}
    for message in sorted(sent, key=lambda m: m["seq"]):
        for user in members[message["conversation_id"]]:
            out[user].append(message["id"])
    return out


async def _metric(
    http: aiohttp.ClientSession, stack: Stack, service: str, name: str, **labels: str
) -> list[float]:
    procs = [p for p in stack.services if p.service == service]
    return [await metric_value(http, p.url, name, **labels) for p in procs]


async def test_replicas_share_the_work_and_both_gateways_deliver(
    scaled: Stack, gateways: list[Client], tenant: str, http: aiohttp.ClientSession
) -> None:
    convs = await _conversations(gateways[0], tenant)
    readers = [Reader(u, gateways, i % 2, tenant) for i, u in enumerate(USERS)]
    for reader in readers:
        await reader.start()

    sent = []
    for n, conv in zip(range(120), itertools.cycle(convs)):
        reply = await gateways[n % 2].send(
            tenant, conv["members"][0], conv["id"], f"m{n}"
        )
        assert reply.status == 201, reply
        sent.append(reply.body)
    expected = _expected(convs, sent)

    async def all_delivered() -> bool:
        return all(len(r.got) >= len(expected[r.user]) for r in readers)

    await eventually(all_delivered, timeout=20)
    await asyncio.sleep(0.5)
    for reader in readers:
        await reader.stop()
        assert [m["id"] for m in reader.got] == expected[reader.user]  # once, in order

    accepted = await _metric(
        http, scaled, "ingest", "messaging_ingest_sends_total", outcome="accepted"
    )
    stored = await _metric(
        http,
        scaled,
        "store",
        "messaging_consumer_events_total",
        consumer="messages.store",
        outcome="ack",
    )
    frames = await _metric(http, scaled, "fanout", "messaging_fanout_deliveries_total")
    assert all(n > 0 for n in accepted)
    assert sum(accepted) >= 120
    assert all(n > 0 for n in stored)
    assert all(n > 0 for n in frames)
    assert sum(frames) == sum(len(ids) for ids in expected.values())  # none twice


async def test_losing_one_replica_of_each_under_load_loses_and_repeats_nothing(
    scaled: Stack, gateways: list[Client], tenant: str
) -> None:
    convs = await _conversations(gateways[0], tenant)
    readers = [Reader(u, gateways, i % 2, tenant) for i, u in enumerate(USERS)]
    for reader in readers:
        await reader.start()
    sent: list[dict] = []

    async def keep_sending() -> None:
        pending = []
        for n, conv in zip(range(300), itertools.cycle(convs)):
            pending.append(
                asyncio.create_task(_send(gateways, tenant, conv, n, f"{tenant}-{n}"))
            )
            await asyncio.sleep(0.02)
        for reply in await asyncio.gather(*pending):
            assert reply is not None, "a send was never accepted"
            sent.append(reply)

    sending = asyncio.create_task(keep_sending())
    await asyncio.sleep(2.0)
    victims = [p for p in scaled.services if p.index == 1]
    assert sorted(p.service for p in victims) == sorted(SERVICES)
    for proc in victims:
        proc.kill()
    await asyncio.sleep(1.5)
    for proc in victims:  # as a supervisor would
        proc.start()
    await asyncio.gather(*(asyncio.to_thread(p.wait_ready) for p in victims))
    await sending

    assert len({m["id"] for m in sent}) == 300
    expected = _expected(convs, sent)

    async def all_delivered() -> bool:
        return all(len(r.got) >= len(expected[r.user]) for r in readers)

    await eventually(all_delivered, timeout=45)
    await asyncio.sleep(1.0)  # anything repeated would arrive by now
    for reader in readers:
        await reader.stop()
        assert [m["id"] for m in reader.got] == expected[reader.user], reader.user
    assert any(r.moves for r in readers)  # some sockets did lose their gateway

    pool = await asyncpg.create_pool(
        scaled.urls["MSG_DATABASE_URL"], min_size=1, max_size=2
    )
    try:

        async def all_stored() -> bool:
            count = await pool.fetchval(
                "SELECT count(*) FROM messages WHERE tenant_id = $1", tenant
            )
            return count >= len(sent)

        await eventually(all_stored, timeout=30)
        rows = await pool.fetch(
            "SELECT id::text AS id, count(*) AS n FROM messages "
            "WHERE tenant_id = $1 GROUP BY id",
            tenant,
        )
    finally:
        await pool.close()
    assert {r["id"] for r in rows} == {m["id"] for m in sent}
    assert {r["n"] for r in rows} == {1}
