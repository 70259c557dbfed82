"""PostgreSQL and Redis in containers, where a Docker engine answers.

Used by the session fixtures when Docker is available; on machines without
it the tests run against the embedded servers instead. NATS always runs
embedded: the suite needs it configured with the stack's users and
permissions, and reloads it when a test adds an integrator.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("tests.containers")

POSTGRES_IMAGE = "postgres:18-alpine"
REDIS_IMAGE = "redis:7-alpine"


def docker_available() -> bool:
    if os.environ.get("MSG_TEST_INFRA", "auto") == "native":
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # no socket, no permission, no engine: all "no"
        log.info("docker.unavailable", extra={"error": repr(exc)})
        return False
    return True


def start_all() -> tuple[dict[str, str], list[Any]]:
    """Start the servers; returns their URLs and the containers."""
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    started: list[Any] = []
    try:
        postgres = PostgresContainer(
            POSTGRES_IMAGE,
            username="messaging",
            password="messaging",
            dbname="messaging",
        )
        postgres.start()
        started.append(postgres)
        redis = RedisContainer(REDIS_IMAGE)
        redis.start()
        started.append(redis)
    except Exception:
        for container in started:
            container.stop()
        raise
    urls = {
        "MSG_DATABASE_URL": postgres.get_connection_url(driver=None),
        "MSG_REDIS_URL": (
            f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        ),
    }
    return urls, started
