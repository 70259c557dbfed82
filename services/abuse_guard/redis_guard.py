"""Checks answered by Redis: one Lua script per check, atomic across replicas.

Keys of one tenant share its hash tag (see ``libs.limits``)::

    abuse:{<t>}:sends:<user>                       accepted sends (sorted set)
    abuse:{<t>}:dup:<user>:<conversation>:<sha256>  duplicate marker -> message id
    abuse:{<t>}:idem:<user>:<client_msg_id>         idempotency marker -> message id
"""

from __future__ import annotations

from pathlib import Path

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from libs.limits import key_prefix, override_key
from libs.schema.api import AbuseCheck
from services.abuse_guard.decision import IDEMPOTENCY_SECONDS, Decision, Policy

_HERE = Path(__file__).parent
_CHECK = (_HERE / "check.lua").read_text()
_RELEASE = (_HERE / "release.lua").read_text()

# What "Redis is unreachable" looks like to the client: refused or dropped
# connections, timeouts, a server still loading its data after a restart,
# or a replica that cannot take writes during a failover.
REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    OSError,
)

# A check waits at most this long for Redis before the guard answers from
# memory instead. Not tighter: the clock runs on this process's event loop,
# and a busy loop (not a slow Redis) would otherwise tip the guard into
# degraded mode, where limits hold per replica only.
REDIS_TIMEOUT = 1.0
# Waiting for a free pooled connection is back-pressure from our own load,
# never a sign that Redis is down.
POOL_WAIT = 2.0


def connect(url: str, max_connections: int = 64) -> Redis:
    """A client that fails fast: one immediate retry (a pooled connection may
    be stale after a Redis restart), then the error, never seconds of back-off.

    The pool blocks when all its connections are busy: more checks in flight
    than connections is load, not an outage (the default pool would raise
    "Too many connections", a ConnectionError, and the guard would degrade).
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT,
        decode_responses=True,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), retries=1),
    )
    return Redis.from_pool(pool)


def _keys(request: AbuseCheck) -> tuple[str, str, str]:
    base = key_prefix(request.tenant)
    user = request.sender_id
    sends = f"{base}:sends:{user}"
    duplicate = (
        f"{base}:dup:{user}:{request.conversation_id}:{request.body_fingerprint}"
    )
    idempotency = f"{base}:idem:{user}:{request.client_msg_id or ''}"
    return sends, duplicate, idempotency


class RedisGuard:
    def __init__(self, client: Redis, defaults: Policy) -> None:
        self._client = client
        self._defaults = defaults
        self._check = client.register_script(_CHECK)
        self._release = client.register_script(_RELEASE)

    async def check(self, request: AbuseCheck) -> Decision:
        sends, duplicate, idempotency = _keys(request)
        keys = [
            override_key(request.tenant),
            override_key(request.tenant, request.sender_id),
            sends,
            duplicate,
            idempotency,
        ]
        args = [
            request.message_id,
            self._defaults.limit,
            self._defaults.window,
            self._defaults.duplicate_window,
            "1" if request.client_msg_id is not None else "0",
            IDEMPOTENCY_SECONDS * 1000,
        ]
        reply = await self._check(keys=keys, args=args)
        verdict, original, limit, window, duplicate_ms, remaining, next_slot_us = reply
        return Decision(
            verdict=verdict,
            policy=Policy(
                limit=int(limit),
                window=int(window),
                duplicate_window=int(duplicate_ms) / 1000,
            ),
            remaining=int(remaining),
            next_slot=int(next_slot_us) / 1e6,
            original_id=original or None,
        )

    async def release(self, request: AbuseCheck) -> bool:
        sends, duplicate, _ = _keys(request)
        removed = await self._release(
            keys=[sends, duplicate], args=[request.message_id]
        )
        return int(removed) > 0

    async def ping(self) -> bool:
        return bool(await self._client.ping())
