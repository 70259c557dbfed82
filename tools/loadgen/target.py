"""The system under test, as a client sees it: HTTP calls and sockets."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec

from libs import auth

Frame = dict[str, Any]
SETUP_ATTEMPTS = 10  # per conversation created before the load starts


class MessagingTarget:
    CONVERSATIONS = "/api/messaging/conversations"
    MESSAGES = "/api/messaging"
    KEYED = True  # sends carry client_msg_id
    PAGE = {"limit": "50"}

    def __init__(
        self, gateways: list[str], secret: str, session: aiohttp.ClientSession
    ) -> None:
        self.gateways = [g.rstrip("/") for g in gateways]
        self._secret = secret
        self._session = session
        self._tokens: dict[tuple[str, str], str] = {}

    def _auth(self, tenant: str, user: str) -> dict[str, str]:
        token = self._tokens.get((tenant, user))
        if token is None:
            token = auth.issue(self._secret, tenant=tenant, user_id=user, ttl=6 * 3600)
            self._tokens[(tenant, user)] = token
        return {"Authorization": f"Bearer {token}"}

    def gateway_for(self, key: int) -> str:
        return self.gateways[key % len(self.gateways)]

    async def create_conversation(
        self, tenant: str, creator: str, members: list[str]
    ) -> str:
        url = self.gateway_for(hash(tenant)) + self.CONVERSATIONS
        for attempt in range(SETUP_ATTEMPTS):
            async with self._session.post(
                url, json={"members": members}, headers=self._auth(tenant, creator)
            ) as resp:
                body = await resp.json()
                if resp.status == 201:
                    return body["id"]
                if resp.status not in (429, 500, 502, 503, 504):
                    break  # our request is wrong: retrying will not help
                # A gateway at capacity says when to come back.
                wait = float(resp.headers.get("Retry-After", 0.2 * (attempt + 1)))
            await asyncio.sleep(wait * (0.5 + random.random()))
        raise RuntimeError(f"could not create a conversation: {resp.status} {body}")

    async def send(
        self,
        gateway: str,
        tenant: str,
        user: str,
        conversation_id: str,
        body: str,
        client_msg_id: str | None,
    ) -> tuple[int, Any]:
        payload: dict[str, str] = {"conversation_id": conversation_id, "body": body}
        if client_msg_id is not None and self.KEYED:
            payload["client_msg_id"] = client_msg_id
        try:
            async with self._session.post(
                gateway + self.MESSAGES,
                data=msgspec.json.encode(payload),
                headers=self._auth(tenant, user),
            ) as resp:
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 599, {"error": {"code": "client", "message": repr(exc)}}

    async def list_messages(
        self, gateway: str, tenant: str, user: str, conversation_id: str
    ) -> int:
        try:
            async with self._session.get(
                gateway + self.MESSAGES,
                params={"conversation_id": conversation_id, **self.PAGE},
                headers=self._auth(tenant, user),
            ) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return 599

    async def connect(
        self, gateway: str, tenant: str, user: str, since_seq: int | None
    ) -> aiohttp.ClientWebSocketResponse:
        url = gateway.replace("http", "ws", 1) + "/api/messaging/ws"
        params = {} if since_seq is None else {"since_seq": str(since_seq)}
        return await self._session.ws_connect(
            url,
            params=params,
            headers=self._auth(tenant, user),
            autoping=True,
            heartbeat=None,
            max_msg_size=0,
        )

    async def frames(self, ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[Frame]:
        """The server's frames as ``{event, data}`` dicts."""
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            yield _frame.decode(msg.data)

    async def metric(self, gateway: str, name: str) -> float | None:
        """One unlabelled sample from a gateway's /metrics."""
        async with self._session.get(gateway + "/metrics") as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


_frame = msgspec.json.Decoder(dict)


class LoadSocket:
    """One client socket that stays connected, resuming by seq after churn."""

    def __init__(
        self,
        socket_id: int,
        tenant: str,
        user_id: str,
        gateway: str,
        on_frame: Callable[[LoadSocket, Frame, float, bool], None],
    ) -> None:
        self.socket_id = socket_id
        self.tenant = tenant
        self.user_id = user_id
        self.gateway = gateway
        self._on_frame = on_frame
        self.max_seq: int | None = None
        self.ready = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._target: MessagingTarget | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed_by_server: list[int | None] = []
        self.churning = False
        self._closing = False

    async def open(self, target: MessagingTarget, *, resume: bool = False) -> None:
        self.ready.clear()
        self._closing = False
        since = (self.max_seq or 0) if resume else None
        self._target = target
        self.ws = await target.connect(self.gateway, self.tenant, self.user_id, since)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in self._target.frames(ws):
            if frame.get("event") == "ready":
                self.ready.set()
                continue
            # Frames before "ready" are the replay of what was missed.
            self._on_frame(self, frame, time.time(), self.ready.is_set())
        if not self._closing:
            self.closed_by_server.append(ws.close_code)

    async def resumed(self, timeout: float) -> bool:
        """Whether the socket got to "ready"; False as soon as the server
        closed it first (1013 when its history was not available)."""
        assert self._reader is not None
        ready = asyncio.ensure_future(self.ready.wait())
        await asyncio.wait(
            {ready, self._reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        return self.ready.is_set()

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


class SocketIoTarget(MessagingTarget):
    """The python-socketio peer (``tools.loadgen.peer``), driven with the
    same workload. Its sockets speak Engine.IO 4 / Socket.IO 5 over a plain
    WebSocket, which this class translates to ``{event, data}`` frames."""

    CONVERSATIONS = "/peer/conversations"
    MESSAGES = "/peer/messages"
    KEYED = False  # the peer knows no client_msg_id
    PAGE: dict[str, str] = {}

    async def connect(
        self, gateway: str, tenant: str, user: str, since_seq: int | None
    ) -> aiohttp.ClientWebSocketResponse:
        url = gateway.replace("http", "ws", 1) + "/socket.io/"
        ws = await self._session.ws_connect(
            url, params={"EIO": "4", "transport": "websocket"}, max_msg_size=0
        )
        opened = await ws.receive_str()  # Engine.IO "open": 0{...}
        if not opened.startswith("0"):
            raise ConnectionError(f"unexpected Engine.IO greeting {opened[:40]!r}")
        token = self._auth(tenant, user)["Authorization"].removeprefix("Bearer ")
        await ws.send_str("40" + msgspec.json.encode({"token": token}).decode())
        return ws

    async def frames(self, ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[Frame]:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            text = msg.data
            if text == "2":  # Engine.IO ping
                await ws.send_str("3")
            elif text.startswith("40"):  # namespace connected
                yield {"event": "ready", "data": {}}
            elif text.startswith("42"):
                event, data = msgspec.json.decode(text[2:])
                yield {"event": event, "data": data}
            elif text.startswith("44"):
                raise ConnectionError(f"connection refused by the peer: {text}")
