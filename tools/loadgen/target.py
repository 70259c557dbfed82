"""The system under test, as a client sees it: HTTP calls and sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from libs import auth

Frame = dict[str, Any]


class MessagingTarget:
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
        url = self.gateway_for(hash(tenant)) + "/api/messaging/conversations"
        for attempt in range(5):
            async with self._session.post(
                url, json={"members": members}, headers=self._auth(tenant, creator)
            ) as resp:
                body = await resp.json()
                if resp.status == 201:
                    return body["id"]
            await asyncio.sleep(0.2 * (attempt + 1))
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
        if client_msg_id is not None:
            payload["client_msg_id"] = client_msg_id
        try:
            async with self._session.post(
                gateway + "/api/messaging",
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
                gateway + "/api/messaging",
                params={"conversation_id": conversation_id, "limit": "50"},
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
        self._reader: asyncio.Task[None] | None = None
        self.closed_by_server: list[int | None] = []
        self.churning = False
        self._closing = False

    async def open(self, target: MessagingTarget, *, resume: bool = False) -> None:
        self.ready.clear()
        self._closing = False
        since = (self.max_seq or 0) if resume else None
        self.ws = await target.connect(self.gateway, self.tenant, self.user_id, since)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = _frame.decode(msg.data)
            if frame.get("event") == "ready":
                self.ready.set()
                continue
            # Frames before "ready" are the replay of what was missed.
            self._on_frame(self, frame, time.time(), self.ready.is_set())
        if not self._closing:
            self.closed_by_server.append(ws.close_code)

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
