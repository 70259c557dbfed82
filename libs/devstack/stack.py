"""The whole system on one machine: embedded servers, bootstrap, services.

Used by ``make run`` (through the supervisor) and by the tests, so both run
exactly the same processes with the same settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from libs.bus.permissions import ADMIN
from libs.devstack.natsauth import NatsAuth
from libs.devstack.servers import (
    LOOPBACK,
    ManagedProcess,
    NatsServer,
    PostgresServer,
    RedisServer,
    ServerError,
    free_port,
    port_open,
)

log = logging.getLogger("devstack")

# Services in start order; the gateway last, so it finds the others up.
SERVICES = ("store", "fanout", "abuse-guard", "ingest", "presence", "gateway")
# Settings a developer may give `make run` that reach every service.
PASSED_THROUGH = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "MSG_TRACE_FILE",
    "MSG_LOG_LEVEL",
    "MSG_RETENTION_DAYS",
    "MSG_DUPLICATE_WINDOW",
    "MSG_WS_QUEUE_SIZE",
    "MSG_WS_MAX_PER_USER",
    "MSG_GATEWAY_MAX_IN_FLIGHT",
    "MSG_GATEWAY_MAX_LOOP_LAG",
    "MSG_RATE_LIMIT",
    "MSG_RATE_WINDOW",
    "MSG_DUPLICATE_SUPPRESSION_WINDOW",
    "MSG_PRESENCE_TTL",
    "MSG_PRESENCE_HEARTBEAT",
    "MSG_PRESENCE_GRACE",
)


@dataclass(frozen=True)
class Ports:
    nats: int
    nats_monitor: int
    postgres: int
    redis: int
    gateway: int
    ops_base: int

    @classmethod
    def development(cls) -> Ports:
        env = os.environ
        return cls(
            nats=int(env.get("MSG_DEV_NATS_PORT", 14222)),
            nats_monitor=int(env.get("MSG_DEV_NATS_MONITOR_PORT", 18222)),
            postgres=int(env.get("MSG_DEV_POSTGRES_PORT", 15432)),
            redis=int(env.get("MSG_DEV_REDIS_PORT", 16379)),
            gateway=int(env.get("MSG_HTTP_PORT", 8080)),
            ops_base=int(env.get("MSG_DEV_OPS_PORT_BASE", 9100)),
        )

    @classmethod
    def free(cls) -> Ports:
        return cls(
            nats=free_port(),
            nats_monitor=free_port(),
            postgres=free_port(),
            redis=free_port(),
            gateway=free_port(),
            ops_base=0,
        )


class ServiceProcess(ManagedProcess):
    def __init__(
        self,
        service: str,
        index: int,
        env: dict[str, str],
        log_path: Path,
        *,
        ops_port: int,
        http_port: int | None = None,
    ) -> None:
        super().__init__(f"{service}-{index}", log_path)
        self.service = service
        self.index = index
        self.env = env
        self.ops_port = ops_port
        self.http_port = http_port
        self.restarts = 0

    @property
    def url(self) -> str:
        port = self.http_port if self.http_port else self.ops_port
        return f"http://{LOOPBACK}:{port}"

    def start(self) -> None:
        command = [sys.executable, "-m", f"services.{self.service.replace('-', '_')}"]
        self.spawn(command, env=self.env)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerError(f"{self.name} exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerError(
            f"{self.name} not ready after {timeout}s; see {self.log_path}"
        )


def dev_jwt_secret(root: Path) -> str:
    """MSG_JWT_SECRET, or a development secret kept in ``root`` (git-ignored)."""
    given = os.environ.get("MSG_JWT_SECRET")
    if given:
        return given
    path = root / "dev-jwt-secret"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    log.warning(
        "devstack.development_secret",
        extra={
            "path": str(path),
            "why": "MSG_JWT_SECRET is not set; this secret is for development only",
        },
    )
    return path.read_text().strip()


class Stack:
    def __init__(
        self,
        root: Path,
        ports: Ports,
        *,
        scale: int = 1,
        jwt_secret: str | None = None,
        extra_env: dict[str, str] | None = None,
        external: dict[str, str] | None = None,
    ) -> None:
        """``external``: servers that already run, by setting name
        (``MSG_NATS_URL``, ``MSG_DATABASE_URL``, ``MSG_REDIS_URL``); the
        embedded server is not started for those."""
        self.root = root
        self.external = dict(external or {})
        self.ports = ports
        self.scale = scale
        self.jwt_secret = jwt_secret or dev_jwt_secret(root)
        self.extra_env = extra_env or {}
        self.nats = NatsServer(root, ports.nats, ports.nats_monitor)
        self.postgres = PostgresServer(root, ports.postgres)
        self.redis = RedisServer(root, ports.redis)
        self.services: list[ServiceProcess] = []
        # One NATS user per service, an admin and integrators, with passwords
        # kept in ``root``. An external NATS server that does not check them
        # accepts the connections all the same.
        self.nats_auth = NatsAuth.load_or_create(root)

    # ------------------------------------------------------------ infra

    def _embedded(self) -> list[tuple[str, ManagedProcess, int]]:
        servers = [
            ("MSG_NATS_URL", self.nats, self.ports.nats),
            ("MSG_DATABASE_URL", self.postgres, self.ports.postgres),
            ("MSG_REDIS_URL", self.redis, self.ports.redis),
        ]
        return [entry for entry in servers if entry[0] not in self.external]

    @property
    def urls(self) -> dict[str, str]:
        return {
            "MSG_NATS_URL": self.nats.url,
            "MSG_DATABASE_URL": self.postgres.dsn,
            "MSG_REDIS_URL": self.redis.url,
            **self.external,
        }

    def start_infra(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        embedded = self._embedded()
        wanted = [port for _, _, port in embedded]
        if "MSG_NATS_URL" not in self.external:
            wanted.append(self.ports.nats_monitor)
        busy = [port for port in wanted if port_open(port)]
        if busy:
            raise ServerError(
                f"ports already in use: {busy}; stop what holds them or set "
                "MSG_DEV_NATS_PORT / MSG_DEV_NATS_MONITOR_PORT / "
                "MSG_DEV_POSTGRES_PORT / MSG_DEV_REDIS_PORT"
            )
        for _, server, _ in embedded:
            if server is self.nats:
                self.nats.start(config=self.nats_auth.server_config())
            else:
                server.start()
        log.info("devstack.infra_started", extra=self.urls)

    def bootstrap(self) -> None:
        from tools.msgctl.bootstrap import bootstrap

        asyncio.run(bootstrap(self.admin_env()))

    # --------------------------------------------------------- services

    def base_env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MSG_", "OTEL_"))
        }
        env.update(self.urls)
        env["MSG_JWT_SECRET"] = self.jwt_secret
        env["PYTHONUNBUFFERED"] = "1"
        # One fanout partition per fanout replica (see libs/bus/streams.py).
        env["MSG_FANOUT_PARTITIONS"] = str(self.scale)
        for key in PASSED_THROUGH:
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(self.extra_env)
        return env

    def admin_env(self) -> dict[str, str]:
        """Settings of a process that may do anything on the bus (bootstrap)."""
        return {**self.base_env(), **self.nats_auth.env(ADMIN)}

    def make_service(self, service: str, index: int) -> ServiceProcess:
        env = self.base_env()
        env.update(self.nats_auth.env(service))
        env["MSG_INSTANCE"] = f"{service}-{index}"
        if service == "fanout":
            env["MSG_FANOUT_PARTITION"] = str(index % self.scale)
        ops_port = (
            self.ports.ops_base + 10 * SERVICES.index(service) + index
            if self.ports.ops_base
            else free_port()
        )
        http_port = None
        if service == "gateway":
            http_port = self.ports.gateway + index if index else self.ports.gateway
            if not self.ports.ops_base and index:
                http_port = free_port()
            env["MSG_HTTP_PORT"] = str(http_port)
            ops_port = http_port
        env["MSG_OPS_PORT"] = str(ops_port)
        return ServiceProcess(
            service,
            index,
            env,
            self.root / "logs" / f"{service}-{index}.log",
            ops_port=ops_port,
            http_port=http_port,
        )

    def start_services(self, services: Iterable[str] = SERVICES) -> None:
        started = []
        for service in services:
            for index in range(self.scale):
                proc = self.make_service(service, index)
                proc.start()
                self.services.append(proc)
                started.append(proc)
        for proc in started:
            proc.wait_ready()

    def service(self, service: str, index: int = 0) -> ServiceProcess:
        for proc in self.services:
            if proc.service == service and proc.index == index:
                return proc
        raise KeyError(f"{service}-{index}")

    def restart(self, proc: ServiceProcess) -> None:
        proc.stop()
        proc.restarts += 1
        proc.start()
        proc.wait_ready()

    @property
    def gateway_urls(self) -> list[str]:
        return [p.url for p in self.services if p.service == "gateway"]

    # ------------------------------------------------------------- stop

    def stop_services(self) -> None:
        for proc in self.services:
            if proc.running:
                assert proc.proc is not None
                proc.proc.send_signal(signal.SIGTERM)
        for proc in self.services:
            try:
                proc.stop(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.services.clear()

    def stop(self) -> None:
        """Services first, then the servers; safe to call twice."""
        self.stop_services()
        for _, server, _ in reversed(self._embedded()):
            server.stop()
