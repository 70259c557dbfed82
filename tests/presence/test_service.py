"""The presence service over the bus, as gateways and integrators use it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp
import nats
from nats.aio.msg import Msg

from libs.bus.subjects import Subjects
from libs.devstack.stack import Stack
from libs.schema.api import PRESENCE_REPORT_MAX
from tests.conftest import TEST_PRESENCE_TTL
from tests.support import metric_value, unique

SUBJECTS = Subjects()


async def _ask(nc: nats.NATS, subject: str, payload: object) -> dict:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reply = await nc.request(subject, raw, timeout=5)
    return json.loads(reply.data)


async def _report(nc: nats.NATS, tenant: str, **entries: list[dict]) -> dict:
    return await _ask(
        nc,
        SUBJECTS.presence_report(tenant),
        {"tenant": tenant, "gateway": "test-gateway", **entries},
    )


async def test_two_replicas_announce_each_transition_once(
    stack: Stack, nc: nats.NATS, http: aiohttp.ClientSession
) -> None:
    second = stack.make_service("presence", 1)
    second.start()
    try:
        await asyncio.to_thread(second.wait_ready)
        replicas = [stack.service("presence").url, second.url]
        tenant = unique()
        users = [f"u{i}" for i in range(60)]
        seen: list[tuple[str, str]] = []
        all_offline = asyncio.Event()

        async def heard(msg: Msg) -> None:
            data = json.loads(msg.data)["data"]
            seen.append((data["user_id"], data["status"]))
            if sum(s == "offline" for _, s in seen) >= len(users):
                all_offline.set()

        sub = await nc.subscribe(
            SUBJECTS.events_of("presence.changed", tenant), cb=heard
        )
        before = await _expired_offlines(http, replicas)
        for start in range(0, len(users), 10):  # six reports, both replicas
            sockets = [{"user_id": u, "connection": "c1"} for u in users[start:][:10]]
            assert await _report(nc, tenant, connects=sockets) == {}

        # No heartbeats follow, as if the gateway had died.
        await asyncio.wait_for(all_offline.wait(), TEST_PRESENCE_TTL * 4)
        await asyncio.sleep(0.5)  # anything announced twice would be here by now
        await sub.unsubscribe()

        assert Counter(seen) == {
            (u, s): 1 for u in users for s in ("online", "offline")
        }
        assert [s for u, s in seen if u == "u0"] == ["online", "offline"]
        after = await _expired_offlines(http, replicas)
        assert after - before == len(users)
    finally:
        second.stop()


async def _expired_offlines(http: aiohttp.ClientSession, urls: list[str]) -> float:
    total = 0.0
    for url in urls:
        total += await metric_value(
            http,
            url,
            "messaging_presence_transitions_total",
            status="offline",
            cause="expired",
        )
    return total


async def test_bad_reports_and_queries_are_refused(stack: Stack, nc: nats.NATS) -> None:
    tenant = unique()
    one = {"user_id": "alice", "connection": "c1"}
    too_many = [
        {"user_id": "alice", "connection": f"c{i}"}
        for i in range(PRESENCE_REPORT_MAX + 1)
    ]

    cases = {
        "other tenant": await _ask(
            nc,
            SUBJECTS.presence_report(tenant),
            {"tenant": unique(), "gateway": "g", "connects": [one]},
        ),
        "not json": await _ask(nc, SUBJECTS.presence_report(tenant), b"{"),
        "user id with a dot": await _report(
            nc, tenant, connects=[{"user_id": "a.b", "connection": "c1"}]
        ),
        "too many sockets": await _report(nc, tenant, heartbeats=too_many),
        "too many users": await _ask(
            nc,
            SUBJECTS.presence_query(tenant),
            {"tenant": tenant, "user_ids": [f"u{i}" for i in range(101)]},
        ),
    }

    codes = {name: reply["error"]["code"] for name, reply in cases.items()}
    assert codes == {
        "other tenant": "forbidden",
        "not json": "invalid_request",
        "user id with a dot": "invalid_request",
        "too many sockets": "invalid_request",
        "too many users": "invalid_request",
    }
    status = await _ask(
        nc, SUBJECTS.presence_query(tenant), {"tenant": tenant, "user_ids": ["alice"]}
    )
    assert status == {
        "users": [{"user_id": "alice", "status": "offline", "last_seen": None}]
    }
