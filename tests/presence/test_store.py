"""The Redis model on its own, against the real Redis: leases, grace, sweeps.

Each test has its own key prefix, so the running presence service never
sweeps these keys, and a short TTL and grace keep the waits small.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from libs.schema.api import PresenceReport, SocketRef
from services.presence.store import PresenceStore, Sweep, Transition
from tests.support import unique

TTL = 0.6
GRACE = 0.3


def _store(client: redis.Redis, ttl: float = TTL) -> PresenceStore:
    return PresenceStore(client, ttl=ttl, grace=GRACE, prefix=unique("ptest") + ":")


def _report(
    tenant: str,
    gateway: str = "gw-a",
    *,
    connects: tuple[tuple[str, str], ...] = (),
    heartbeats: tuple[tuple[str, str], ...] = (),
    disconnects: tuple[tuple[str, str], ...] = (),
) -> PresenceReport:
    def refs(pairs: tuple[tuple[str, str], ...]) -> list[SocketRef]:
        return [SocketRef(user_id=u, connection=c) for u, c in pairs]

    return PresenceReport(
        tenant=tenant,
        gateway=gateway,
        connects=refs(connects),
        heartbeats=refs(heartbeats),
        disconnects=refs(disconnects),
    )


async def _sweep_until(
    store: PresenceStore, count: int, timeout: float = 5.0
) -> list[Transition]:
    """Sweep until ``count`` transitions came out (more would be a bug)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: list[Transition] = []
    while len(found) < count:
        assert loop.time() < deadline, f"only {found} after {timeout}s"
        found += (await store.sweep(100)).transitions
        await asyncio.sleep(0.05)
    return found


async def _status(store: PresenceStore, tenant: str, user: str) -> str:
    return (await store.query(tenant, [user]))[0].status


async def test_two_devices_online_once_offline_after_the_last_and_its_grace(
    redis_client: redis.Redis,
) -> None:
    store, tenant = _store(redis_client), unique()

    first = await store.report(_report(tenant, connects=(("alice", "phone"),)))
    second = await store.report(_report(tenant, connects=(("alice", "laptop"),)))
    one_left = await store.report(_report(tenant, disconnects=(("alice", "phone"),)))
    still = await _status(store, tenant, "alice")
    none_left = await store.report(_report(tenant, disconnects=(("alice", "laptop"),)))
    in_grace = await _status(store, tenant, "alice")
    swept_at_once = await store.sweep(100)
    offline = await _sweep_until(store, 1)

    assert [(t.user_id, t.status, t.cause) for t in first] == [
        ("alice", "online", "connected")
    ]
    assert second == one_left == none_left == []
    assert still == in_grace == "online"
    assert swept_at_once.transitions == []
    assert [(t.user_id, t.status, t.cause) for t in offline] == [
        ("alice", "offline", "disconnected")
    ]
    assert offline[0].at_ms - offline[0].last_seen_ms >= GRACE * 1000
    assert offline[0].at_ms > first[0].at_ms
    [answer] = await store.query(tenant, ["alice"])
    assert answer.status == "offline"
    assert answer.last_seen is not None
    assert (await store.sweep(100)).transitions == []


async def test_reconnect_within_the_grace_is_no_transition_at_all(
    redis_client: redis.Redis,
) -> None:
    store, tenant = _store(redis_client), unique()
    await store.report(_report(tenant, connects=(("bob", "c1"),)))

    gone = await store.report(_report(tenant, disconnects=(("bob", "c1"),)))
    waiting = await store.sweep(100)
    back = await store.report(_report(tenant, "gw-b", connects=(("bob", "c2"),)))
    cancelled = await store.sweep(100)
    await asyncio.sleep(GRACE + 0.2)
    later = await store.sweep(100)

    assert gone == back == []
    assert (waiting.pending, cancelled.pending) == (1, 0)
    assert waiting.transitions == cancelled.transitions == later.transitions == []
    assert await _status(store, tenant, "bob") == "online"


async def test_expired_lease_goes_offline_at_its_expiry_and_only_once(
    redis_client: redis.Redis,
) -> None:
    store, tenant = _store(redis_client), unique()
    users = [f"u{i}" for i in range(30)]
    online = await store.report(
        _report(tenant, connects=tuple((u, f"c{u}") for u in users))
    )
    await asyncio.sleep(TTL + 0.1)

    answered = await store.query(tenant, users[:1])  # before any sweep
    sweeps: list[Sweep] = await asyncio.gather(*(store.sweep(7) for _ in range(8)))
    offline = [t for s in sweeps for t in s.transitions]

    assert len(online) == 30
    assert answered[0].status == "offline"
    assert sorted(t.user_id for t in offline) == sorted(users)
    assert {t.cause for t in offline} == {"expired"}
    assert sum(s.expired for s in sweeps) == 30
    for t in offline:
        assert t.at_ms == t.last_seen_ms + int(TTL * 1000)


async def test_heartbeats_keep_a_lease_and_revive_an_unknown_one(
    redis_client: redis.Redis,
) -> None:
    store, tenant = _store(redis_client), unique()
    await store.report(_report(tenant, connects=(("carol", "c1"),)))

    for _ in range(4):
        await asyncio.sleep(TTL / 3)
        await store.report(_report(tenant, heartbeats=(("carol", "c1"),)))
        assert (await store.sweep(100)).transitions == []
    revived = await store.report(_report(tenant, heartbeats=(("dave", "c9"),)))

    assert await _status(store, tenant, "carol") == "online"
    assert [(t.user_id, t.status) for t in revived] == [("dave", "online")]


async def test_a_heartbeat_arriving_after_the_disconnect_is_ignored(
    redis_client: redis.Redis,
) -> None:
    store, tenant = _store(redis_client), unique()
    await store.report(_report(tenant, connects=(("erin", "c1"),)))
    await store.report(_report(tenant, disconnects=(("erin", "c1"),)))

    late = await store.report(_report(tenant, heartbeats=(("erin", "c1"),)))
    offline = await _sweep_until(store, 1)

    assert late == []
    assert [(t.user_id, t.cause) for t in offline] == [("erin", "disconnected")]
    assert offline[0].at_ms - offline[0].last_seen_ms < TTL * 1000
    assert await _status(store, tenant, "erin") == "offline"


async def test_same_connection_id_on_two_gateways_are_two_sockets(
    redis_client: redis.Redis,
) -> None:
    store, tenant = _store(redis_client), unique()
    await store.report(_report(tenant, "gw-a", connects=(("fay", "c1"),)))
    await store.report(_report(tenant, "gw-b", connects=(("fay", "c1"),)))

    await store.report(_report(tenant, "gw-a", disconnects=(("fay", "c1"),)))
    await asyncio.sleep(GRACE + 0.1)

    assert (await store.sweep(100)).transitions == []
    assert await _status(store, tenant, "fay") == "online"


async def test_query_is_per_tenant_and_unknown_users_are_offline(
    redis_client: redis.Redis,
) -> None:
    store, acme, other = _store(redis_client), unique(), unique()
    await store.report(_report(acme, connects=(("gina", "c1"),)))

    mine = await store.query(acme, ["gina", "nobody"])
    theirs = await store.query(other, ["gina"])

    assert [(u.user_id, u.status) for u in mine] == [
        ("gina", "online"),
        ("nobody", "offline"),
    ]
    assert mine[0].last_seen is not None
    assert mine[1].last_seen is None
    assert (theirs[0].status, theirs[0].last_seen) == ("offline", None)
