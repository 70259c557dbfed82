"""Settings read once from the environment and frozen.

Every variable a service reads is declared here, with its default. Defaults
point at the embedded development stack on 127.0.0.1 and are meant for
development only; a deployment sets each of them explicitly.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

DEV_NATS_URL = "nats://127.0.0.1:4222"
DEV_DATABASE_URL = "postgresql://messaging@127.0.0.1:5432/messaging"
DEV_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(ValueError):
    """A setting is missing or malformed; the service cannot start."""


def _env_field(name: str, default: object, help: str) -> object:
    return field(default=default, metadata={"env": name, "help": help})


def _coerce(raw: str, kind: type, name: str) -> object:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from exc


@dataclass(frozen=True, slots=True)
class Settings:
    """What any service may read. Service-specific knobs live beside it."""

    service: str = "unknown"
    instance: str = _env_field(
        "MSG_INSTANCE", "", "replica name shown in logs and metrics"
    )
    nats_url: str = _env_field("MSG_NATS_URL", DEV_NATS_URL, "NATS server URL(s)")
    nats_user: str = _env_field("MSG_NATS_USER", "", "NATS user for this service")
    nats_password: str = _env_field(
        "MSG_NATS_PASSWORD", "", "NATS password for this service"
    )
    database_url: str = _env_field(
        "MSG_DATABASE_URL", DEV_DATABASE_URL, "PostgreSQL DSN (store only)"
    )
    redis_url: str = _env_field("MSG_REDIS_URL", DEV_REDIS_URL, "Redis URL")
    jwt_secret: str = _env_field(
        "MSG_JWT_SECRET", "", "HS256 secret for client tokens (gateway)"
    )
    subject_prefix: str = _env_field("MSG_SUBJECT_PREFIX", "msg", "bus subject root")
    log_level: str = _env_field("MSG_LOG_LEVEL", "INFO", "log level")
    ops_host: str = _env_field("MSG_OPS_HOST", "127.0.0.1", "ops server bind host")
    ops_port: int = _env_field(
        "MSG_OPS_PORT", 0, "port of /metrics, /healthz, /readyz (0 = any)"
    )
    http_host: str = _env_field("MSG_HTTP_HOST", "127.0.0.1", "gateway bind host")
    http_port: int = _env_field("MSG_HTTP_PORT", 8080, "gateway HTTP port")
    otlp_endpoint: str = _env_field(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTLP/HTTP endpoint; empty = no export"
    )
    request_timeout: float = _env_field(
        "MSG_REQUEST_TIMEOUT", 5.0, "seconds a bus request may take"
    )
    retention_days: int = _env_field(
        "MSG_RETENTION_DAYS", 365, "days messages are kept (store housekeeping)"
    )
    duplicate_window: float = _env_field(
        "MSG_DUPLICATE_WINDOW",
        300.0,
        "seconds JetStream remembers a message id (bootstrap)",
    )
    partitions_ahead_days: int = _env_field(
        "MSG_PARTITIONS_AHEAD_DAYS", 7, "daily partitions created ahead of need"
    )
    ws_queue_size: int = _env_field(
        "MSG_WS_QUEUE_SIZE", 512, "frames buffered per socket before it is closed"
    )
    presence_ttl: float = _env_field(
        "MSG_PRESENCE_TTL",
        15.0,
        "seconds a socket's presence lease lives without a heartbeat",
    )
    presence_heartbeat: float = _env_field(
        "MSG_PRESENCE_HEARTBEAT",
        5.0,
        "seconds between a gateway's heartbeats for its sockets",
    )
    presence_grace: float = _env_field(
        "MSG_PRESENCE_GRACE",
        2.5,
        "seconds a user's last socket may be gone before they are offline",
    )

    def __post_init__(self) -> None:
        # Three heartbeats per lease: one late or lost report never expires
        # a live socket.
        if not 0 < 3 * self.presence_heartbeat <= self.presence_ttl:
            raise ConfigError(
                "MSG_PRESENCE_HEARTBEAT must be positive and at most a third "
                "of MSG_PRESENCE_TTL"
            )
        if self.presence_grace < 0:
            raise ConfigError("MSG_PRESENCE_GRACE must not be negative")

    @classmethod
    def from_env(
        cls, service: str, environ: Mapping[str, str] | None = None
    ) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {"service": service}
        for f in fields(cls):
            name = f.metadata.get("env")
            if name is None or name not in env:
                continue
            kind = type(f.default)
            values[f.name] = _coerce(env[name], kind, name)
        if not values.get("instance"):
            values["instance"] = f"{service}@{socket.gethostname()}:{os.getpid()}"
        return cls(**values)

    def require_jwt_secret(self) -> str:
        if len(self.jwt_secret) < 32:
            raise ConfigError(
                "MSG_JWT_SECRET must be set to at least 32 characters "
                "(make run writes a development one to .data/dev-jwt-secret)"
            )
        return self.jwt_secret


def documented_variables() -> dict[str, str]:
    """Every environment variable the services read, with its help text."""
    out = {}
    for f in fields(Settings):
        if "env" in f.metadata:
            out[f.metadata["env"]] = f.metadata["help"]
    return out
