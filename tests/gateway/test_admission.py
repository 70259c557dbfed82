"""A gateway whose event loop keeps running late refuses API calls with 503
overloaded, and serves them again once it has caught up; one late moment (a
garbage collection) refuses nothing.

The guard runs in a real aiohttp server on this test's loop, and the loop is
made late for real, by blocking it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.gateway.admission import LoopLag
from services.gateway.errors import error_middleware
from services.gateway.metrics import GatewayMetrics


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient, LoopLag, CollectorRegistry]]:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    lag = LoopLag(metrics, max_lag=0.05, interval=0.02)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/api/messaging", lag.guard(hello))
    client = TestClient(TestServer(app))
    await client.start_server()
    lag.start()
    try:
        yield client, lag, registry
    finally:
        await lag.stop()
        await client.close()


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def _hog(seconds: float, block: float = 0.1) -> None:
    """Keep the loop busy: ``block`` seconds at a time, for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(block)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0)


async def test_calls_are_refused_while_the_loop_runs_late_and_served_after(
    served: tuple[TestClient, LoopLag, CollectorRegistry],
) -> None:
    client, lag, registry = served
    before = await client.get("/api/messaging")

    hog = asyncio.create_task(_hog(1.5))
    while not lag.behind:
        assert not hog.done(), "the loop ran late, but the gateway did not see it"
        await asyncio.sleep(0.01)
    during = await client.get("/api/messaging")
    body = await during.json()
    await hog
    await asyncio.sleep(0.2)  # a few timely samples
    after = await client.get("/api/messaging")

    assert before.status == 200
    assert during.status == 503
    assert body["error"]["code"] == "overloaded"
    assert during.headers["Retry-After"] == "1"
    assert after.status == 200
    assert _sample(registry, "messaging_gateway_shed_total", reason="loop_lag") >= 1
    # The late samples are on record.
    assert _sample(registry, "messaging_gateway_loop_lag_seconds_sum") > 0.5


async def test_one_late_moment_refuses_nothing(
    served: tuple[TestClient, LoopLag, CollectorRegistry],
) -> None:
    client, _, registry = served
    statuses = []
    for _ in range(5):
        await asyncio.sleep(0.1)
        # One long pause, like a full garbage collection.
        time.sleep(0.3)  # noqa: ASYNC251
        statuses.append((await client.get("/api/messaging")).status)

    assert statuses == [200] * 5
    assert _sample(registry, "messaging_gateway_shed_total", reason="loop_lag") == 0
