"""Test helpers: an HTTP/WebSocket client for the gateway, and unique names."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import re
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from redis.asyncio import Redis

from libs import auth, ids, limits
from libs.bus.subjects import CONVERSATIONS_STREAM, Subjects
from libs.schema.events import (
    AcceptedMessage,
    ConversationCreated,
    ConversationData,
    MessageAccepted,
)
from libs.schema.types import utc_now_ms

# Spans of every service of the test stack, in its root folder (JSON lines).
TRACE_FILE = "spans.jsonl"


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def lift_limits(
    redis: Redis, tenant: str, *, allow_duplicates: bool = False
) -> None:
    """Let ``tenant``'s users send hundreds of messages a second (and, if
    asked, the same body again and again), for tests about something other
    than the abuse guard, whose defaults allow 30 sends in 10 s."""
    override = limits.LimitOverride(
        limit=limits.MAX_LIMIT,
        window=1,
        duplicate_window=0 if allow_duplicates else None,
    )
    await limits.set_override(redis, tenant, override)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    def rate_limit(self) -> dict[str, int]:
        """``q``, ``w``, ``r`` and ``t`` of the RateLimit-Policy and RateLimit
        headers, which must be in the IETF draft's syntax (String item named
        "sends", Integer parameters)."""
        policy = re.fullmatch(
            r'"sends";q=(\d+);w=(\d+)', self.headers["RateLimit-Policy"]
        )
        state = re.fullmatch(r'"sends";r=(\d+);t=(\d+)', self.headers["RateLimit"])
        assert policy, self.headers
        assert state, self.headers
        q, w = map(int, policy.groups())
        r, t = map(int, state.groups())
        return {"q": q, "w": w, "r": r, "t": t}


class WsClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next_frame(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {msg.type} {self.ws.close_code}")
        return json.loads(msg.data)

    async def next_event(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.next_frame(max(0.01, deadline - loop.time()))
            if frame["event"] == event:
                return frame["data"]

    async def messages(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        out = []
        while len(out) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"got {len(out)} of {count} messages")
            out.append(await self.next_event("messages:new", remaining))
        return out

    async def quiet(
        self, seconds: float, event: str = "messages:new"
    ) -> list[dict[str, Any]]:
        """``event`` frames arriving within ``seconds`` (to show none come)."""
        frames = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                frame = await self.next_frame(remaining)
            except TimeoutError:
                break
            if frame["event"] == event:
                frames.append(frame)
        return frames

    async def presence_of(self, user_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next ``presence:update`` about ``user_id``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no presence:update about {user_id}")
            data = await self.next_event("presence:update", remaining)
            if data["user_id"] == user_id:
                return data

    async def close(self) -> None:
        await self.ws.close()


class Client:
    """Talks to one gateway as any user of any tenant."""

    def __init__(
        self, base_url: str, secret: str, session: aiohttp.ClientSession
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.session = session

    def token(self, tenant: str, user: str, ttl: float = 3600.0) -> str:
        return auth.issue(self.secret, tenant=tenant, user_id=user, ttl=ttl)

    def at(self, base_url: str) -> Client:
        return Client(base_url, self.secret, self.session)

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.base_url + path, data=data, params=params, headers=all_headers
        ) as resp:
            raw = await resp.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Reply(resp.status, body, dict(resp.headers))

    async def create_conversation(
        self, tenant: str, creator: str, members: list[str], title: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"members": members}
        if title is not None:
            payload["title"] = title
        reply = await self.request(
            "POST",
            "/api/messaging/conversations",
            token=self.token(tenant, creator),
            json_body=payload,
        )
        assert reply.status == 201, reply
        return reply.body

    async def send(
        self,
        tenant: str,
        user: str,
        conversation_id: str,
        body: str,
        client_msg_id: str | None = None,
    ) -> Reply:
        payload = {"conversation_id": conversation_id, "body": body}
        if client_msg_id is not None:
            payload["client_msg_id"] = client_msg_id
        return await self.request(
            "POST", "/api/messaging", token=self.token(tenant, user), json_body=payload
        )

    async def list_messages(
        self,
        tenant: str,
        user: str,
        conversation_id: str,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Reply:
        params = {"conversation_id": conversation_id}
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        return await self.request(
            "GET", "/api/messaging", token=self.token(tenant, user), params=params
        )

    async def all_messages(
        self, tenant: str, user: str, conversation_id: str, limit: int = 200
    ) -> list[dict[str, Any]]:
        out, cursor = [], None
        while True:
            reply = await self.list_messages(
                tenant, user, conversation_id, limit, cursor
            )
            assert reply.status == 200, reply
            out.extend(reply.body["messages"])
            cursor = reply.body["next_cursor"]
            if cursor is None:
                return out

    async def ws(
        self,
        tenant: str,
        user: str,
        *,
        since_seq: int | None = None,
        token: str | None = None,
        wait_ready: bool = True,
    ) -> WsClient:
        params = {} if since_seq is None else {"since_seq": str(since_seq)}
        url = self.base_url.replace("http", "ws", 1) + "/api/messaging/ws"
        ws = await self.session.ws_connect(
            url,
            params=params,
            headers={"Authorization": f"Bearer {token or self.token(tenant, user)}"},
        )
        client = WsClient(ws)
        if wait_ready and since_seq is None:
            await client.next_event("ready")
        return client


async def metric_value(
    session: aiohttp.ClientSession, base_url: str, name: str, **labels: str
) -> float:
    """The sum of a sample's values on a service's /metrics, filtered by labels."""
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(base_url.rstrip("/") + "/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


def raw_ws_connect(base_url: str, token: str, rcvbuf: int = 4096) -> socket.socket:
    """A WebSocket handshake on a plain socket with a tiny receive buffer,
    for a client that then stops reading (a slow consumer)."""
    host, port = base_url.split("//", 1)[1].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /api/messaging/ws HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(head.decode(errors="replace"))
    return sock


async def stream_count(nc: Any, stream: str, subject: str) -> int:
    """Messages kept in ``stream`` on subjects matching ``subject``."""
    info = await nc.jetstream().stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def eventually(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0
) -> None:
    """Wait until ``predicate`` holds (for what happens in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class BusUser:
    """A NATS connection as one user, recording what the server refused."""

    def __init__(self, nc: Any, refused: list[str]) -> None:
        self.nc = nc
        self.refused = refused

    @classmethod
    async def connect(
        cls, url: str, user: str, password: str, timeout: float = 10.0
    ) -> BusUser:
        """Retries while a server that was just told to reload does not know
        the user yet."""
        import nats

        from libs.bus.permissions import inbox_prefix

        refused: list[str] = []

        async def on_error(exc: Exception) -> None:
            refused.append(str(exc))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                nc = await nats.connect(
                    url,
                    user=user,
                    password=password,
                    inbox_prefix=inbox_prefix(user),
                    error_cb=on_error,
                    allow_reconnect=False,
                    connect_timeout=2,
                )
            except (nats.errors.Error, OSError):  # the server hung up on us
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            refused.clear()  # failed attempts report "authorization violation"
            return cls(nc, refused)

    async def was_refused(self, what: str, timeout: float = 2.0) -> bool:
        """Whether the server refuses ``what`` within ``timeout``.

        The server's refusal can arrive after the answer to a later ping, so
        a round trip alone does not prove there was none; nats-py reports it
        in lower case.
        """
        await self.nc.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(what.lower() in reason.lower() for reason in self.refused):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        await self.nc.close()


def accepted_event(
    tenant: str,
    conversation_id: str,
    body: str,
    *,
    at: dt.datetime | None = None,
    sender: str = "alice",
) -> MessageAccepted:
    """A ``message.accepted`` event as ingest would publish it."""
    message_id = ids.uuid7()
    when = at or utc_now_ms()
    return MessageAccepted(
        id=message_id,
        tenant=tenant,
        time=when,
        data=AcceptedMessage(
            id=message_id,
            conversation_id=conversation_id,
            sender_id=sender,
            body=body,
            created_at=when,
        ),
    )


async def publish_accepted(nc: Any, event: MessageAccepted) -> int:
    """Publish ``event`` straight to the stream, bypassing ingest; its seq."""
    ack = await nc.jetstream().publish(
        Subjects().message_accepted(event.tenant, event.data.conversation_id),
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": event.id},
    )
    return ack.seq


async def publish_conversation(
    nc: Any, tenant: str, members: list[str], title: str
) -> str:
    """Publish a ``conversation.created`` by alice straight to the stream,
    bypassing ingest and its checks (as an earlier version might have
    written it); the conversation's id."""
    conversation_id = ids.uuid7()
    now = utc_now_ms()
    event = ConversationCreated(
        id=conversation_id,
        tenant=tenant,
        time=now,
        data=ConversationData(
            id=conversation_id,
            members=members,
            created_by="alice",
            created_at=now,
            title=title,
        ),
    )
    await nc.jetstream().publish(
        Subjects().conversation_created(tenant, conversation_id),
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": conversation_id},
        stream=CONVERSATIONS_STREAM,
    )
    return conversation_id
