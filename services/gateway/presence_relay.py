"""Forwarding ``presence.changed`` events to the sockets of the same tenant.

Every gateway hears every presence event (a core NATS subscription, not a
consumer: a gateway only needs what happens while it runs) and writes a
``presence:update`` frame to each socket of that tenant here, except the
user's own. The frame is encoded once per event.

Presence replicas publish concurrently, so two events of one user may arrive
out of order; their ``at`` times strictly increase per user, and an event no
newer than the last one forwarded for that user is dropped.

Known shortcoming: each socket gets every transition in its tenant. That
suits company-sized tenants, but when N users of one tenant reconnect at
once it writes N² frames. A very large tenant needs subscriptions (only the
users a client shows) instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.bus.subjects import Subjects
from libs.delivery import PRESENCE_UPDATE, encode_frame
from libs.schema.api import PresenceUpdate
from libs.schema.events import PresenceChanged
from services.gateway.metrics import GatewayMetrics
from services.gateway.sessions import Sessions

log = logging.getLogger("gateway.presence")
_decoder = msgspec.json.Decoder(PresenceChanged)

REMEMBERED_USERS = 100_000  # users whose latest forwarded ``at`` is kept


class PresenceRelay:
    def __init__(self, sessions: Sessions, metrics: GatewayMetrics) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._latest: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._subscription: Subscription | None = None

    async def start(self, nc: Client, subjects: Subjects) -> None:
        self._subscription = await nc.subscribe(
            subjects.events_of("presence.changed"), cb=self._received
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _received(self, msg: Msg) -> None:
        tenant = Subjects.tenant_of(msg.subject)
        sockets = self._sessions.tenant_sockets(tenant)
        if not sockets:
            return
        try:
            event = _decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning(
                "presence.event_unreadable",
                extra={"subject": msg.subject, "error": str(exc)},
            )
            return
        if event.tenant != tenant:
            log.warning("presence.event_misrouted", extra={"subject": msg.subject})
            return
        data = event.data
        at_ms = round(data.at.timestamp() * 1000)
        if not self._is_newest(tenant, data.user_id, at_ms):
            self._metrics.presence_stale.inc()
            return
        update = PresenceUpdate(user_id=data.user_id, status=data.status, at=data.at)
        text = encode_frame(PRESENCE_UPDATE, update).decode()
        for socket in tuple(sockets):
            if socket.user_id != data.user_id:
                socket.offer_event(text, PRESENCE_UPDATE, at_ms)

    def _is_newest(self, tenant: str, user_id: str, at_ms: int) -> bool:
        key = (tenant, user_id)
        last = self._latest.get(key)
        if last is not None and last >= at_ms:
            return False
        self._latest[key] = at_ms
        self._latest.move_to_end(key)
        if len(self._latest) > REMEMBERED_USERS:
            self._latest.popitem(last=False)
        return True
