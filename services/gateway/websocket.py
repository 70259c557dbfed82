"""``GET /api/messaging/ws``: authenticate, replay what was missed, go live.

Authentication: ``Authorization: Bearer``, ``?token=``, or (for browsers
that cannot set headers) a first frame ``{"event": "auth", "data": {"token":
...}}`` within ``AUTH_TIMEOUT`` seconds. The same frame later refreshes the
token of an open socket. When the token expires the socket is closed with
4001.

Resume: ``?since_seq=N`` first sends every message of the user's
conversations with a greater ``seq``, in order and once, then live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from aiohttp import WSMsgType, web

from libs import auth
from libs.bus.subjects import Subjects
from libs.delivery import NEW_MESSAGE, encode_frame
from libs.schema import errors
from libs.schema.api import MessagesSince, MessagesSinceReply
from services.gateway.auth import authenticate, bearer_token
from services.gateway.backend import Backend
from services.gateway.errors import ApiError
from services.gateway.http_api import query_int
from services.gateway.metrics import GatewayMetrics
from services.gateway.sessions import (
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_MANY,
    CLOSE_TRY_LATER,
    CLOSE_UNAUTHORIZED,
    Sessions,
    Socket,
)

log = logging.getLogger("gateway.ws")

AUTH_TIMEOUT = 10.0
HEARTBEAT = 25.0  # protocol pings; a client that stops answering is dropped
REPLAY_PAGE = 500


def _since_seq(request: web.Request) -> int | None:
    raw = request.query.get("since_seq")
    if raw is None or raw == "":
        return None
    return query_int(raw, "since_seq")


class WebSocketEndpoint:
    def __init__(
        self,
        sessions: Sessions,
        backend: Backend,
        subjects: Subjects,
        metrics: GatewayMetrics,
        *,
        tokens: auth.VerifiedTokens,
        queue_size: int,
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._subjects = subjects
        self._metrics = metrics
        self._tokens = tokens
        self._queue_size = queue_size

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Reject bad requests before the upgrade, as plain HTTP errors.
        since_seq = _since_seq(request)
        token = bearer_token(request, allow_query=True)
        principal = authenticate(self._tokens, token) if token else None
        if principal is not None and not self._admit(principal):
            raise ApiError(
                errors.TOO_MANY_SOCKETS,
                "too many open sockets for this user on this gateway; close one",
            )
        admitted = principal
        try:
            ws = web.WebSocketResponse(
                compress=False,  # per-frame deflate costs CPU on every write
                heartbeat=HEARTBEAT,
                max_msg_size=64 * 1024,
            )
            await ws.prepare(request)
            if principal is None:
                principal = await self._first_frame_auth(ws)
                if principal is None:
                    return ws
                if not self._admit(principal):
                    await ws.close(
                        code=CLOSE_TOO_MANY, message=b"too many open sockets"
                    )
                    return ws
                admitted = principal
            socket = Socket(
                ws,
                principal,
                self._metrics,
                queue_size=self._queue_size,
                transport=request.transport,
            )
            await self._run(socket, since_seq)
            return ws
        finally:
            if admitted is not None:
                self._sessions.leave(admitted.tenant, admitted.user_id)

    def _admit(self, principal: auth.Principal) -> bool:
        admitted = self._sessions.admit(principal.tenant, principal.user_id)
        if not admitted:
            log.info(
                "ws.too_many_sockets",
                extra={"tenant": principal.tenant, "user": principal.user_id},
            )
        return admitted

    async def _first_frame_auth(
        self, ws: web.WebSocketResponse
    ) -> auth.Principal | None:
        try:
            msg = await ws.receive(timeout=AUTH_TIMEOUT)
        except TimeoutError:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"no auth frame")
            return None
        token = _auth_frame_token(msg.data) if msg.type == WSMsgType.TEXT else None
        try:
            return authenticate(self._tokens, token)
        except ApiError as exc:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=str(exc)[:120].encode())
            return None

    async def _run(self, socket: Socket, since_seq: int | None) -> None:
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(
            max(0.0, socket.principal.expires_at - time.time()),
            socket.close,
            CLOSE_TOKEN_EXPIRED,
            "token expired",
        )
        if since_seq is not None:
            socket.hold(since_seq)
        await self._sessions.attach(socket)
        writer: asyncio.Task[None] | None = None
        try:
            if since_seq is not None and not await self._replay(socket, since_seq):
                return
            writer = asyncio.create_task(socket.write_loop())
            await socket.ws.send_str(
                encode_frame("ready", {"user_id": socket.user_id}).decode()
            )
            expiry = await self._read_loop(socket, expiry)
        finally:
            expiry.cancel()
            await self._sessions.detach(socket)
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await writer
            # Not ws.close(): that would send 1000 ahead of a code a close
            # was started with (1013, 4001, 4003, 4008, 1001).
            await socket.finish()

    async def _replay(self, socket: Socket, since_seq: int) -> bool:
        after = since_seq
        while True:
            query = MessagesSince(
                tenant=socket.tenant,
                user_id=socket.user_id,
                since_seq=after,
                limit=REPLAY_PAGE,
            )
            try:
                reply = await self._backend.call(
                    self._subjects.query(socket.tenant, "message.since"),
                    query,
                    MessagesSinceReply,
                    "store",
                )
            except ApiError as exc:
                log.warning(
                    "replay.failed", extra={"tenant": socket.tenant, "error": str(exc)}
                )
                socket.close(CLOSE_TRY_LATER, "history unavailable; reconnect")
                return False
            for message in reply.messages:
                text = encode_frame(NEW_MESSAGE, message).decode()
                await socket.send_backlog(text, message.id)
                after = message.seq
            if not reply.more:
                break
        socket.release()
        return True

    async def _read_loop(
        self, socket: Socket, expiry: asyncio.TimerHandle
    ) -> asyncio.TimerHandle:
        async for msg in socket.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
            except ValueError:
                frame = None
            event = frame.get("event") if isinstance(frame, dict) else None
            if event == "ping":
                socket.offer_event(
                    encode_frame("pong", {"at": time.time()}).decode(), "pong"
                )
            elif event == "auth":
                expiry = self._refresh(socket, frame, expiry)
            else:
                reply = {"code": "unknown_event", "message": "expected ping or auth"}
                socket.offer_event(encode_frame("error", reply).decode(), "error")
        return expiry

    def _refresh(
        self, socket: Socket, frame: dict, expiry: asyncio.TimerHandle
    ) -> asyncio.TimerHandle:
        """A new token for the same tenant and user extends the socket's life."""
        try:
            fresh = authenticate(self._tokens, _auth_frame_token(json.dumps(frame)))
        except ApiError as exc:
            reply = {"code": errors.UNAUTHORIZED, "message": str(exc)}
            socket.offer_event(encode_frame("error", reply).decode(), "error")
            return expiry
        if (fresh.tenant, fresh.user_id) != (socket.tenant, socket.user_id):
            socket.close(CLOSE_UNAUTHORIZED, "token is for another user")
            return expiry
        expiry.cancel()
        socket.principal = fresh
        ok = encode_frame("auth:ok", {"expires_at": fresh.expires_at}).decode()
        socket.offer_event(ok, "auth")
        return asyncio.get_running_loop().call_later(
            max(0.0, fresh.expires_at - time.time()),
            socket.close,
            CLOSE_TOKEN_EXPIRED,
            "token expired",
        )


def _auth_frame_token(text: str) -> str | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("event") != "auth":
        return None
    data = frame.get("data")
    token = data.get("token") if isinstance(data, dict) else None
    return token if isinstance(token, str) else None
