"""The guard's rules, checked on the real Redis script and on its in-process
twin alike: both must give the same verdicts for the same sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import pytest
from redis.asyncio import Redis

from libs import limits
from libs.devstack.stack import Stack
from libs.schema.api import AbuseCheck
from services.abuse_guard import redis_guard
from services.abuse_guard.decision import Decision, Policy
from services.abuse_guard.local_guard import LocalGuard
from tests.abuse_guard.sends import DEFAULTS, send
from tests.support import unique


class Backend(Protocol):
    """One way of answering checks, with the limits a test wants in force."""

    async def use(self, tenant: str, policy: Policy) -> None: ...

    async def check(self, request: AbuseCheck) -> Decision: ...

    async def release(self, request: AbuseCheck) -> bool: ...

    async def advance(self, seconds: float) -> None: ...


class InRedis:
    """The Lua script on the stack's Redis; limits set as overrides, as an
    operator would, and time passing for real (the script reads Redis's)."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.guard = redis_guard.RedisGuard(client, DEFAULTS)

    async def use(self, tenant: str, policy: Policy) -> None:
        override = limits.LimitOverride(
            limit=policy.limit,
            window=policy.window,
            duplicate_window=policy.duplicate_window,
        )
        await limits.set_override(self.client, tenant, override)

    async def check(self, request: AbuseCheck) -> Decision:
        return await self.guard.check(request)

    async def release(self, request: AbuseCheck) -> bool:
        return await self.guard.release(request)

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class InMemory:
    """The degraded-mode twin, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.guard = LocalGuard(clock=lambda: self.now)
        self.policies: dict[str, Policy] = {}

    async def use(self, tenant: str, policy: Policy) -> None:
        self.policies[tenant] = policy

    async def check(self, request: AbuseCheck) -> Decision:
        return self.guard.check(request, self.policies.get(request.tenant, DEFAULTS))

    async def release(self, request: AbuseCheck) -> bool:
        return self.guard.release(request)

    async def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
async def redis_client(infra: Stack) -> AsyncIterator[Redis]:
    client = redis_guard.connect(infra.urls["MSG_REDIS_URL"])
    yield client
    await client.aclose()


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest, redis_client: Redis) -> Backend:
    return InRedis(redis_client) if request.param == "redis" else InMemory()


async def test_concurrent_checks_allow_exactly_the_limit(backend: Backend) -> None:
    tenant = unique()
    await backend.use(tenant, Policy(limit=10, window=60, duplicate_window=30))

    decisions = await asyncio.gather(*(backend.check(send(tenant)) for _ in range(50)))

    allowed = [d for d in decisions if d.verdict == "allow"]
    refused = [d for d in decisions if d.verdict == "rate_limited"]
    assert (len(allowed), len(refused)) == (10, 40)
    assert sorted(d.remaining for d in allowed) == list(range(10))
    assert all(0 < d.retry_after <= 60 for d in refused)
    assert {(d.policy.limit, d.policy.window) for d in decisions} == {(10, 60)}


async def test_the_window_slides_with_no_burst_at_its_edge(backend: Backend) -> None:
    tenant = unique()
    await backend.use(tenant, Policy(limit=2, window=1, duplicate_window=30))

    first = await backend.check(send(tenant))
    await backend.advance(0.5)
    second = await backend.check(send(tenant))
    await backend.advance(0.3)
    refused = await backend.check(send(tenant))
    await backend.advance(refused.retry_after + 0.05)
    after_first_left = await backend.check(send(tenant))
    still_full = await backend.check(send(tenant))

    assert [first.verdict, second.verdict] == ["allow", "allow"]
    assert refused.verdict == "rate_limited"
    assert refused.retry_after == pytest.approx(0.2, abs=0.1)  # when `first` leaves
    assert after_first_left.verdict == "allow"
    # `second` is still inside the window: one slot, not a fresh quota.
    assert still_full.verdict == "rate_limited"
    assert still_full.retry_after == pytest.approx(0.45, abs=0.1)


async def test_a_lowered_limit_waits_for_the_right_send_to_leave(
    backend: Backend,
) -> None:
    tenant = unique()
    await backend.use(tenant, Policy(limit=5, window=60, duplicate_window=30))
    for _ in range(4):
        assert (await backend.check(send(tenant))).verdict == "allow"
        await backend.advance(0.15)

    await backend.use(tenant, Policy(limit=2, window=60, duplicate_window=30))
    refused = await backend.check(send(tenant))

    # Four sends at 0, 0.15, 0.3, 0.45 s; now 0.6 s. Two must leave before a
    # third fits, so the wait ends when the one at 0.3 s leaves: 59.7 s.
    assert refused.verdict == "rate_limited"
    assert refused.retry_after == pytest.approx(59.7, abs=0.07)
    assert refused.remaining == 0


async def test_duplicates_retries_and_releases(backend: Backend) -> None:
    tenant = unique()
    await backend.use(tenant, Policy(limit=30, window=10, duplicate_window=30))

    original = send(tenant, "lunch?")
    first = await backend.check(original)
    again = await backend.check(send(tenant, "lunch?"))
    other_key = await backend.check(send(tenant, "lunch?", client_msg_id="k9"))
    elsewhere = await backend.check(send(tenant, "lunch?", conversation="c2"))
    someone_else = await backend.check(send(tenant, "lunch?", user="bob"))
    keyed = send(tenant, "dinner?", client_msg_id="k1")
    keyed_first = await backend.check(keyed)
    keyed_retry = await backend.check(send(tenant, "anything", client_msg_id="k1"))

    assert first.verdict == "allow"
    assert (again.verdict, again.original_id) == ("duplicate", original.message_id)
    assert (other_key.verdict, other_key.original_id) == (
        "duplicate",
        original.message_id,
    )
    assert [elsewhere.verdict, someone_else.verdict] == ["allow", "allow"]
    assert keyed_first.verdict == "allow"
    assert (keyed_retry.verdict, keyed_retry.original_id) == (
        "retry",
        keyed.message_id,
    )
    # Only allowed sends take a slot: alice's "lunch?" in c1 and in c2, and
    # her keyed one; the duplicates and the retry took none.
    assert keyed_retry.remaining == 30 - 3

    assert await backend.release(original)
    assert await backend.release(keyed)
    resent = await backend.check(send(tenant, "lunch?"))
    keyed_again = await backend.check(send(tenant, "dinner?", client_msg_id="k1"))
    assert resent.verdict == "allow"  # no longer a duplicate of the failed send
    assert resent.remaining == 30 - 2  # and its slot was given back
    assert keyed_again.verdict == "retry"  # the key is kept: ingest looks it up


async def test_duplicate_window_ends_and_zero_turns_it_off(backend: Backend) -> None:
    tenant, lax = unique(), unique()
    await backend.use(tenant, Policy(limit=30, window=10, duplicate_window=0.5))
    await backend.use(lax, Policy(limit=30, window=10, duplicate_window=0))

    first = await backend.check(send(tenant, "ping"))
    inside = await backend.check(send(tenant, "ping"))
    await backend.advance(0.6)
    after = await backend.check(send(tenant, "ping"))
    unguarded = [(await backend.check(send(lax, "ping"))).verdict for _ in range(3)]

    assert [first.verdict, inside.verdict, after.verdict] == [
        "allow",
        "duplicate",
        "allow",
    ]
    assert unguarded == ["allow"] * 3


async def test_user_values_win_over_tenant_values_and_defaults(
    redis_client: Redis,
) -> None:
    guard = redis_guard.RedisGuard(redis_client, DEFAULTS)
    tenant = unique()

    untouched = await guard.check(send(tenant))
    await limits.set_override(redis_client, tenant, limits.LimitOverride(limit=5))
    by_tenant = await guard.check(send(tenant))
    await limits.set_override(
        redis_client, tenant, limits.LimitOverride(window=20), user="alice"
    )
    by_user = await guard.check(send(tenant))
    bobs = await guard.check(send(tenant, user="bob"))
    await redis_client.hset(limits.override_key(tenant), "limit", "lots")
    garbled = await guard.check(send(tenant, user="bob"))

    assert untouched.policy == DEFAULTS
    assert by_tenant.policy == Policy(limit=5, window=10, duplicate_window=30)
    assert by_user.policy == Policy(limit=5, window=20, duplicate_window=30)
    assert bobs.policy == Policy(limit=5, window=10, duplicate_window=30)
    assert garbled.policy == DEFAULTS  # unreadable data never breaks a check


def test_memory_is_bounded() -> None:
    guard = LocalGuard(capacity=2)
    policy = Policy(limit=1, window=60, duplicate_window=60)

    verdicts = [
        guard.check(send("t", user=user), policy).verdict
        for user in ("u1", "u2", "u3", "u1")
    ]

    # u1 was forgotten to make room for u3, so its second send passes: the
    # bound trades exactness for memory, during an outage only.
    assert verdicts == ["allow"] * 4


async def test_more_checks_at_once_than_redis_connections(
    redis_client: Redis,
) -> None:
    guard = redis_guard.RedisGuard(redis_client, DEFAULTS)
    tenant = unique()
    await limits.set_override(
        redis_client, tenant, limits.LimitOverride(limit=100, window=60)
    )

    # The responder runs up to 512 checks at once; the pool has far fewer
    # connections, and a busy pool must mean waiting, not "Redis is down".
    decisions = await asyncio.gather(*(guard.check(send(tenant)) for _ in range(600)))

    verdicts = [d.verdict for d in decisions]
    assert verdicts.count("allow") == 100
    assert verdicts.count("rate_limited") == 500
