"""Open sockets, the per-user delivery subscriptions that feed them, and the
bounded queue that keeps one slow client from slowing the others.

Each socket has its own queue and writer task. Deliveries are offered to the
queue without waiting; a socket whose queue is full is closed with
``CLOSE_SLOW`` and can resume by ``since_seq``. One NATS subscription per
connected user (not per socket) feeds all of that user's sockets here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors
from aiohttp import web
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace

from libs import delivery
from libs.auth import Principal
from libs.bus.subjects import Subjects
from libs.telemetry import tracing
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.sessions")
_tracer = tracing.tracer("messaging.gateway")

# Close codes we send, documented in README.md (4000-4999 are ours).
CLOSE_NORMAL = 1000
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_UNAUTHORIZED = 4003
CLOSE_SLOW = 4008
CLOSE_TOO_MANY = 4029  # the user already holds the most sockets allowed
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_LATER = 1013

# The ``reason`` label of messaging_ws_disconnects_total, by the code we
# closed with; a socket the client (or the network) closed is "client".
DISCONNECT_REASONS = {
    CLOSE_TOKEN_EXPIRED: "token_expired",
    CLOSE_UNAUTHORIZED: "unauthorized",
    CLOSE_SLOW: "slow",
    CLOSE_GOING_AWAY: "shutdown",
    CLOSE_TRY_LATER: "history_unavailable",
}
CLIENT_CLOSED = "client"

_SEEN_IDS = 2048  # message ids remembered per socket to drop repeats
_CLOSE_TIMEOUT = 1.0  # a client too slow to take the close frame is cut off


@dataclass(slots=True)
class _Item:
    text: str
    event: str
    created_ms: int | None


class Socket:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        principal: Principal,
        metrics: GatewayMetrics,
        *,
        queue_size: int,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self.principal = principal
        # Random, so a gateway restarted under the same instance name never
        # reuses the id of a socket whose presence lease is still alive.
        self.connection_id = secrets.token_hex(8)
        self._metrics = metrics
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(queue_size)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._held: list[tuple[int, _Item, str]] | None = None
        # A socket resumed with since_seq=N already has everything up to N;
        # a live frame at or below it is a redelivery (each user's frames
        # leave fanout in seq order), never news.
        self._floor = 0
        self._limit = queue_size
        self.close_reason: str | None = None
        self.close_code: int | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    # ---------------------------------------------------------- offering

    def offer_message(
        self, text: str, message_id: str, seq: int, created_ms: int
    ) -> None:
        """Queue a ``messages:new`` frame unless this socket already has it."""
        if self.close_reason is not None:
            return
        if message_id in self._seen or seq <= self._floor:
            self._metrics.dropped_repeats.inc()
            return
        item = _Item(text, delivery.NEW_MESSAGE, created_ms)
        if self._held is not None:
            self._held.append((seq, item, message_id))
            if len(self._held) > self._limit * 4:
                self.close(CLOSE_SLOW, "slow")
            return
        self._remember(message_id)
        self._enqueue(item)

    def offer_event(self, text: str, event: str, created_ms: int | None = None) -> None:
        if self.close_reason is None:
            self._enqueue(_Item(text, event, created_ms))

    def _remember(self, message_id: str) -> None:
        self._seen[message_id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)

    def _enqueue(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.close(CLOSE_SLOW, "slow")

    # ------------------------------------------------------------ replay

    def hold(self, since_seq: int) -> None:
        """Keep live frames aside while the backlog after ``since_seq`` is
        being replayed."""
        self._held = []
        self._floor = since_seq

    async def send_backlog(self, text: str, message_id: str) -> None:
        """Write a replayed frame now (the writer is not running yet)."""
        if message_id in self._seen:
            return
        self._remember(message_id)
        await self.ws.send_str(text)
        self._metrics.frames.labels(delivery.NEW_MESSAGE).inc()

    def release(self) -> None:
        """Queue the frames held during replay, in stream order, then go live."""
        held, self._held = self._held or [], None
        for _seq, item, message_id in sorted(held, key=lambda h: h[0]):
            if message_id not in self._seen:
                self._remember(message_id)
                self._enqueue(item)

    # ----------------------------------------------------------- writing

    async def write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            await self.ws.send_str(item.text)
            self._metrics.frames.labels(item.event).inc()
            if item.created_ms is not None:
                lag = time.time() - item.created_ms / 1000
                self._metrics.frame_latency(item.event).observe(max(lag, 0.0))

    # ----------------------------------------------------------- closing

    def close(self, code: int, reason: str) -> None:
        """Close with an application code; safe to call more than once.
        The first code given is the one the client gets."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self.close_code = code
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        self._closing = asyncio.create_task(self._close(code, reason))

    async def finish(self) -> None:
        """Finish the socket: with the code a close was started with, if one
        was (the close runs as a task that may not have started yet), else
        normally (1000)."""
        if self._closing is None:
            self.close(CLOSE_NORMAL, "")
        assert self._closing is not None
        # Shielded: a handler cancelled at shutdown still sends its code.
        await asyncio.shield(self._closing)

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()), _CLOSE_TIMEOUT
            )
        except (TimeoutError, ConnectionError):
            # The client stopped reading; do not wait on it any longer.
            if self._transport is not None:
                self._transport.abort()


@dataclass(slots=True)
class _User:
    sockets: set[Socket] = field(default_factory=set)
    subscription: Subscription | None = None


Listener = Callable[[Socket], None]


def _ignore(socket: Socket) -> None:
    return None


class Sessions:
    """Every open socket on this gateway, by user and by tenant.

    ``on_attach`` and ``on_detach`` hear of each socket once, without being
    awaited: they must not block.
    """

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        metrics: GatewayMetrics,
        *,
        on_attach: Listener = _ignore,
        on_detach: Listener = _ignore,
        max_per_user: int = 16,
    ) -> None:
        self._max_per_user = max_per_user
        # Sockets per user from admission (before the upgrade) to the end,
        # so that a burst of handshakes cannot all pass before any attaches.
        self._admitted: dict[tuple[str, str], int] = {}
        self._nc = nc
        self._subjects = subjects
        self._metrics = metrics
        self._on_attach = on_attach
        self._on_detach = on_detach
        self._users: dict[tuple[str, str], _User] = {}
        self._tenants: dict[str, set[Socket]] = {}
        self._lock = asyncio.Lock()
        # Every reason shows from the start, at 0, so a rate over it exists.
        for reason in (*DISCONNECT_REASONS.values(), CLIENT_CLOSED):
            metrics.disconnects.labels(reason)

    def tenant_sockets(self, tenant: str) -> set[Socket]:
        return self._tenants.get(tenant, set())

    def all_sockets(self) -> list[Socket]:
        return [s for sockets in self._tenants.values() for s in sockets]

    def admit(self, tenant: str, user_id: str) -> bool:
        """Take one of the user's socket slots, if one is free. Every
        admitted socket must ``leave`` once, however it ends."""
        key = (tenant, user_id)
        held = self._admitted.get(key, 0)
        if held >= self._max_per_user:
            return False
        self._admitted[key] = held + 1
        return True

    def leave(self, tenant: str, user_id: str) -> None:
        key = (tenant, user_id)
        held = self._admitted.get(key, 0) - 1
        if held > 0:
            self._admitted[key] = held
        else:
            self._admitted.pop(key, None)

    def user_online_here(self, tenant: str, user_id: str) -> bool:
        return (tenant, user_id) in self._users

    async def attach(self, socket: Socket) -> None:
        key = (socket.tenant, socket.user_id)
        # One lock for subscription changes: attach/detach of the same user
        # on two sockets must not race into two subscriptions or none.
        async with self._lock:
            user = self._users.get(key)
            if user is None:
                user = self._users[key] = _User()
                subject = self._subjects.delivery(*key)
                user.subscription = await self._nc.subscribe(
                    subject, cb=self._deliverer(user)
                )
            user.sockets.add(socket)
        self._tenants.setdefault(socket.tenant, set()).add(socket)
        self._metrics.sockets.inc()
        self._metrics.connects.inc()
        self._on_attach(socket)

    async def detach(self, socket: Socket) -> None:
        key = (socket.tenant, socket.user_id)
        tenant_sockets = self._tenants.get(socket.tenant)
        if tenant_sockets is not None:
            tenant_sockets.discard(socket)
            if not tenant_sockets:
                del self._tenants[socket.tenant]
        async with self._lock:
            user = self._users.get(key)
            if user is None or socket not in user.sockets:
                return
            user.sockets.discard(socket)
            if not user.sockets:
                del self._users[key]
                if user.subscription is not None:
                    with contextlib.suppress(nats.errors.Error):
                        await user.subscription.unsubscribe()
        self._metrics.sockets.dec()
        reason = DISCONNECT_REASONS.get(socket.close_code or 0, CLIENT_CLOSED)
        self._metrics.disconnects.labels(reason).inc()
        self._on_detach(socket)

    def _deliverer(self, user: _User) -> Callable[[Msg], object]:
        async def deliver(msg: Msg) -> None:
            headers = msg.headers or {}
            message_id = headers.get(delivery.HEADER_ID)
            if message_id is None:
                return
            seq = int(headers.get(delivery.HEADER_SEQ, "0"))
            created_ms = int(headers.get(delivery.HEADER_TIME, "0"))
            text = msg.data.decode()
            # The last hop of the send's trace: fanout's context, carried in
            # the delivery's headers. The socket writes happen later, in
            # each socket's writer (see messaging_delivery_latency_seconds).
            with tracing.span(
                _tracer,
                f"{delivery.NEW_MESSAGE} deliver",
                parent=headers,
                kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.sockets": len(user.sockets)},
            ):
                for socket in tuple(user.sockets):
                    socket.offer_message(text, message_id, seq, created_ms)

        return deliver

    def close_all(self, code: int, reason: str) -> None:
        for socket in self.all_sockets():
            socket.close(code, reason)
