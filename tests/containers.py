"""NATS, PostgreSQL and Redis in containers, where a Docker engine answers.

Used by the session fixtures when Docker is available; on machines without
it the tests run against the embedded servers instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("tests.containers")

NATS_IMAGE = "nats:2.12-alpine"
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
    """Start the three servers; returns their URLs and the containers."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    started: list[Any] = []
    try:
        nats = DockerContainer(NATS_IMAGE).with_command("-js").with_exposed_ports(4222)
        nats.start()
        started.append(nats)
        wait_for_logs(nats, "Server is ready", timeout=30)
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
    host = nats.get_container_host_ip()
    urls = {
        "MSG_NATS_URL": f"nats://{host}:{nats.get_exposed_port(4222)}",
        "MSG_DATABASE_URL": postgres.get_connection_url(driver=None),
        "MSG_REDIS_URL": (
            f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        ),
    }
    return urls, started
