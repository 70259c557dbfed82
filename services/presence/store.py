"""Presence state in Redis: leases per socket, transitions per user.

Each call is one Lua script (``scripts.py``), so every decision (is this the
user's first socket? their last? has the grace ended?) is atomic across any
number of presence replicas and gateways.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

import redis.asyncio as redis
import redis.exceptions

from libs.schema.api import PresenceReport, SocketRef, UserPresence
from libs.schema.events import PresenceStatus
from services.presence import scripts

# A dependency that is down or slow, not a bug in a script.
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

KEY_PREFIX = "presence:"
LAST_SEEN_KEPT = 30 * 24 * 3600.0  # seconds a user's last_seen outlives them

# Why a user went online or offline: a first socket opened, the last one
# closed (and its grace ended), or the last lease ran out.
Cause = Literal["connected", "disconnected", "expired"]


def from_millis(ms: int) -> datetime:
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


@dataclass(frozen=True, slots=True)
class Transition:
    """A user went online (first socket) or offline (last one gone)."""

    tenant: str
    user_id: str
    status: PresenceStatus
    at_ms: int
    last_seen_ms: int
    cause: Cause


@dataclass(frozen=True, slots=True)
class Sweep:
    transitions: list[Transition]
    expired: int  # leases that ran out without a disconnect
    ended: int  # graces that ran out
    next_due_ms: int | None  # earliest lease expiry or grace end left
    now_ms: int
    leases: int  # live leases, all tenants
    pending: int  # users in their grace


class PresenceStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl: float,
        grace: float,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self._redis = client
        self._ttl_ms = int(ttl * 1000)
        self._grace_ms = int(grace * 1000)
        self._prefix = prefix
        self._keys = [prefix + "leases", prefix + "grace"]
        self._report = client.register_script(scripts.REPORT)
        self._sweep = client.register_script(scripts.SWEEP)
        self._query = client.register_script(scripts.QUERY)

    async def report(self, report: PresenceReport) -> list[Transition]:
        """Apply a gateway's report; the online transitions it caused."""
        touched = [*report.connects, *report.heartbeats]
        args: list[str | int] = [
            self._prefix,
            self._ttl_ms,
            self._grace_ms,
            int(LAST_SEEN_KEPT * 1000),
            report.tenant,
            len(touched),
            *self._pairs(report.gateway, touched),
            len(report.disconnects),
            *self._pairs(report.gateway, report.disconnects),
        ]
        flat = await self._report(keys=self._keys, args=args)
        return [
            Transition(
                tenant=report.tenant,
                user_id=_text(flat[i]),
                status="online",
                at_ms=int(flat[i + 2]),
                last_seen_ms=int(flat[i + 3]),
                cause="connected",
            )
            for i in range(0, len(flat), 4)
        ]

    @staticmethod
    def _pairs(gateway: str, sockets: list[SocketRef]) -> list[str]:
        out = []
        for ref in sockets:
            out += (ref.user_id, f"{gateway}/{ref.connection}")
        return out

    async def sweep(self, limit: int) -> Sweep:
        """Claim up to ``limit`` expired leases and ended graces."""
        expired, ended, next_due, now, leases, pending, flat = await self._sweep(
            keys=self._keys, args=[self._prefix, limit]
        )
        transitions = [
            Transition(
                tenant=_text(flat[i]),
                user_id=_text(flat[i + 1]),
                status="offline",
                at_ms=int(flat[i + 3]),
                last_seen_ms=int(flat[i + 4]),
                cause=cast(Cause, _text(flat[i + 5])),
            )
            for i in range(0, len(flat), 6)
        ]
        return Sweep(
            transitions=transitions,
            expired=int(expired),
            ended=int(ended),
            next_due_ms=None if int(next_due) < 0 else int(next_due),
            now_ms=int(now),
            leases=int(leases),
            pending=int(pending),
        )

    async def query(self, tenant: str, user_ids: list[str]) -> list[UserPresence]:
        flat = await self._query(args=[self._prefix, tenant, *user_ids])
        out = []
        for user_id, status, seen in zip(user_ids, flat[::2], flat[1::2], strict=True):
            seen_text = _text(seen)
            out.append(
                UserPresence(
                    user_id=user_id,
                    status="online" if _text(status) == "online" else "offline",
                    last_seen=from_millis(int(seen_text)) if seen_text else None,
                )
            )
        return out

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except UNAVAILABLE:
            return False


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
