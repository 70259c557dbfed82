"""Socket lifecycle: how a socket authenticates, expires, and is dropped when
it cannot keep up without slowing anyone else."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
from redis.asyncio import Redis

from libs.devstack.stack import Stack
from tests.support import (
    Client,
    WsClient,
    lift_limits,
    metric_value,
    raw_ws_connect,
    unique,
)


def _drain(sock: socket.socket) -> bytes:
    """Everything the server still sends before it hangs up."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:  # reset by the server's abort
        pass
    sock.close()
    return data


async def test_token_in_query_and_in_first_frame(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    url = client.base_url.replace("http", "ws", 1) + "/api/messaging/ws"
    by_query = await client.session.ws_connect(
        url, params={"token": client.token(tenant, "bob")}
    )
    by_frame = await client.session.ws_connect(url)
    await by_frame.send_str(
        json.dumps({"event": "auth", "data": {"token": client.token(tenant, "bob")}})
    )
    for ws in (by_query, by_frame):
        await WsClient(ws).next_event("ready")

    sent = await client.send(tenant, "alice", conv["id"], "both ways")

    for ws in (by_query, by_frame):
        assert (await WsClient(ws).next_event("messages:new"))["id"] == sent.body["id"]
        await ws.close()


async def test_bad_first_frame_is_closed_4003(client: Client) -> None:
    url = client.base_url.replace("http", "ws", 1) + "/api/messaging/ws"
    ws = await client.session.ws_connect(url)

    await ws.send_str(json.dumps({"event": "auth", "data": {"token": "forged"}}))
    msg = await ws.receive(timeout=5)

    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4003


async def test_socket_is_closed_4001_when_its_token_expires(client: Client) -> None:
    tenant = unique()
    ws = await client.ws(tenant, "bob", token=client.token(tenant, "bob", ttl=2))

    msg = await ws.ws.receive(timeout=6)

    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.ws.close_code == 4001


async def test_refreshed_token_keeps_the_socket_open(client: Client) -> None:
    tenant = unique()
    ws = await client.ws(tenant, "bob", token=client.token(tenant, "bob", ttl=2))

    fresh = client.token(tenant, "bob", ttl=600)
    await ws.ws.send_str(json.dumps({"event": "auth", "data": {"token": fresh}}))

    assert "expires_at" in await ws.next_event("auth:ok")
    await ws.ws.send_str(json.dumps({"event": "ping"}))
    await asyncio.sleep(2.5)
    assert (await ws.next_event("pong"))["at"] > 0
    assert not ws.ws.closed
    await ws.close()


async def test_slow_client_is_dropped_without_slowing_others(
    stack: Stack, client: Client, redis: Redis
) -> None:
    gateway = stack.make_service("gateway", 7)
    gateway.env["MSG_WS_QUEUE_SIZE"] = "16"
    gateway.start()
    try:
        await asyncio.to_thread(gateway.wait_ready)
        here = client.at(gateway.url)
        tenant = unique()
        await lift_limits(redis, tenant, allow_duplicates=True)  # 300 big ones
        conv = await client.create_conversation(tenant, "alice", ["bob", "carol"])
        slow = raw_ws_connect(gateway.url, client.token(tenant, "bob"))  # never reads
        fast = await here.ws(tenant, "carol")
        big = "📦" * 4000

        sent = []
        for _ in range(300):
            reply = await client.send(tenant, "alice", conv["id"], big)
            sent.append(reply.body["id"])
        got = await fast.messages(300, timeout=60)

        assert [m["id"] for m in got] == sent
        received = await asyncio.to_thread(_drain, slow)
        assert len(received) < 300 * 16_000  # cut off well before the end
        for _ in range(50):
            dropped = await metric_value(
                client.session,
                gateway.url,
                "messaging_ws_disconnects_total",
                reason="slow",
            )
            if dropped:
                break
            await asyncio.sleep(0.2)
        assert dropped == 1
        await fast.close()
    finally:
        gateway.stop()


async def test_a_refresh_with_another_users_token_is_closed_4003(
    client: Client,
) -> None:
    tenant = unique()
    ws = await client.ws(tenant, "bob")

    mallory = client.token(tenant, "mallory")
    await ws.ws.send_str(json.dumps({"event": "auth", "data": {"token": mallory}}))
    msg = await ws.ws.receive(timeout=5)
    while msg.type == aiohttp.WSMsgType.TEXT:  # a pong or presence frame first
        msg = await ws.ws.receive(timeout=5)

    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 4003


async def test_a_stopping_gateway_closes_its_sockets_1001(
    stack: Stack, client: Client
) -> None:
    gateway = stack.make_service("gateway", 8)
    gateway.start()
    try:
        await asyncio.to_thread(gateway.wait_ready)
        tenant = unique()
        ws = await client.at(gateway.url).ws(tenant, "bob")

        await asyncio.to_thread(gateway.stop)
        msg = await ws.ws.receive(timeout=10)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await ws.ws.receive(timeout=10)
    finally:
        gateway.stop()

    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 1001  # the code in the frame (the process may be gone)


async def test_a_user_gets_at_most_16_sockets_per_gateway(client: Client) -> None:
    tenant = unique()
    url = client.base_url.replace("http", "ws", 1) + "/api/messaging/ws"
    token = client.token(tenant, "hoarder")

    async def open_one() -> aiohttp.ClientWebSocketResponse | int:
        try:
            return await client.session.ws_connect(
                url, headers={"Authorization": f"Bearer {token}"}
            )
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status

    attempts = await asyncio.gather(*(open_one() for _ in range(20)))
    opened = [ws for ws in attempts if not isinstance(ws, int)]
    over = await client.request("GET", "/api/messaging/ws", token=token)
    by_frame = await client.session.ws_connect(url)
    await by_frame.send_str(json.dumps({"event": "auth", "data": {"token": token}}))
    refused_frame = await by_frame.receive(timeout=5)
    someone_else = await client.ws(tenant, "bystander")

    assert len(opened) == 16
    assert sorted(a for a in attempts if isinstance(a, int)) == [429] * 4
    assert over.status == 429, over
    assert over.body["error"]["code"] == "too_many_sockets"
    assert refused_frame.type == aiohttp.WSMsgType.CLOSE
    assert refused_frame.data == 4029
    await someone_else.close()

    await opened.pop().close()
    # The slot frees once the gateway has finished the socket, just after
    # its close reply.
    for _ in range(50):
        again = await open_one()
        if not isinstance(again, int):
            break
        await asyncio.sleep(0.05)

    assert not isinstance(again, int), again
    await again.close()
    for ws in opened:
        await ws.close()
