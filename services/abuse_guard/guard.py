"""Which store answers a check: Redis, or this process while Redis is down.

Redis being unreachable never fails a check. The guard switches to its
in-process twin (same rules, counted per replica), says so once at ERROR,
and probes Redis in the background; the first answer switches back and
says so at INFO. While degraded, no check waits for Redis.

The in-process twin uses the limits Redis last reported for each user, or
the service defaults for users it has not seen, since overrides live in Redis.

Shortcoming: what a replica accepted while degraded is not written back to
Redis on recovery, so right after an outage a user may get up to one more
limit's worth of sends in the window, and a duplicate of a send made during
the outage passes. Replaying the in-memory log into Redis on recovery would
close this; the outage itself already allows N times the limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from libs.aio import wait_event
from libs.schema.api import AbuseCheck
from services.abuse_guard.decision import Decision, Policy
from services.abuse_guard.local_guard import LocalGuard
from services.abuse_guard.metrics import AbuseMetrics
from services.abuse_guard.redis_guard import REDIS_DOWN, RedisGuard

log = logging.getLogger("abuse_guard")

PROBE_INTERVAL = 0.5  # seconds between pings of a Redis that was down


class AbuseGuard:
    def __init__(
        self,
        redis: RedisGuard,
        local: LocalGuard,
        defaults: Policy,
        metrics: AbuseMetrics,
        *,
        policy_capacity: int = 100_000,
    ) -> None:
        self._redis = redis
        self._local = local
        self._defaults = defaults
        self._metrics = metrics
        self._policy_capacity = policy_capacity
        self._policies: OrderedDict[tuple[str, str], Policy] = OrderedDict()
        self._degraded = False

    @property
    def degraded(self) -> bool:
        return self._degraded

    async def check(self, request: AbuseCheck) -> tuple[Decision, bool]:
        """The decision, and whether it came from memory instead of Redis."""
        if not self._degraded:
            try:
                decision = await self._redis.check(request)
            except REDIS_DOWN as exc:
                self._enter_degraded(exc)
            else:
                self._remember(request, decision.policy)
                return decision, False
        self._metrics.degraded_checks.inc()
        return self._local.check(request, self._policy(request)), True

    async def release(self, request: AbuseCheck) -> bool:
        if not self._degraded:
            try:
                return await self._redis.release(request)
            except REDIS_DOWN as exc:
                self._enter_degraded(exc)
        return self._local.release(request)

    async def start(self) -> None:
        """Find out at start-up whether Redis answers, rather than at the
        first send."""
        try:
            await self._redis.ping()
        except REDIS_DOWN as exc:
            self._enter_degraded(exc)

    async def watch(self, stopping: asyncio.Event) -> None:
        """While degraded, ping Redis until it answers; until ``stopping``."""
        while not stopping.is_set():
            if self._degraded:
                try:
                    await self._redis.ping()
                except REDIS_DOWN:
                    pass  # still down; said so when it went
                else:
                    self._leave_degraded()
            await wait_event(stopping, PROBE_INTERVAL)

    def _enter_degraded(self, exc: BaseException) -> None:
        if self._degraded:
            return
        self._degraded = True
        self._metrics.degraded.set(1)
        log.error(
            "abuse.degraded",
            extra={
                # redis-py's repr of its errors hides the message
                "error": f"{type(exc).__name__}: {exc}",
                "policy": "checks answered from this replica's memory until "
                "Redis answers again",
            },
        )

    def _leave_degraded(self) -> None:
        self._degraded = False
        self._metrics.degraded.set(0)
        # What this replica counted alone is dropped: Redis is the truth again.
        self._local.clear()
        log.info("abuse.recovered")

    def _remember(self, request: AbuseCheck, policy: Policy) -> None:
        key = (request.tenant, request.sender_id)
        self._policies[key] = policy
        self._policies.move_to_end(key)
        if len(self._policies) > self._policy_capacity:
            self._policies.popitem(last=False)

    def _policy(self, request: AbuseCheck) -> Policy:
        return self._policies.get((request.tenant, request.sender_id), self._defaults)
