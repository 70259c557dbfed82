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


# ``deploy``: the processes that must be given a variable outside the
# development stack, because its default only suits 127.0.0.1 (or is empty).
EVERY_SERVICE = "*"
NOT_GATEWAY = "not gateway"  # the gateway serves its ops routes on MSG_HTTP_PORT


def _env_field(
    name: str, default: object, help: str, deploy: tuple[str, ...] = ()
) -> object:
    return field(
        default=default, metadata={"env": name, "help": help, "deploy": deploy}
    )


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
    nats_url: str = _env_field(
        "MSG_NATS_URL", DEV_NATS_URL, "NATS server URL(s)", (EVERY_SERVICE,)
    )
    nats_user: str = _env_field(
        "MSG_NATS_USER", "", "NATS user for this service", (EVERY_SERVICE,)
    )
    nats_password: str = _env_field(
        "MSG_NATS_PASSWORD", "", "NATS password for this service", (EVERY_SERVICE,)
    )
    database_url: str = _env_field(
        "MSG_DATABASE_URL",
        DEV_DATABASE_URL,
        "PostgreSQL DSN (store only)",
        ("store", "bootstrap"),
    )
    redis_url: str = _env_field(
        "MSG_REDIS_URL", DEV_REDIS_URL, "Redis URL", ("abuse-guard", "presence")
    )
    jwt_secret: str = _env_field(
        "MSG_JWT_SECRET", "", "HS256 secret for client tokens (gateway)", ("gateway",)
    )
    subject_prefix: str = _env_field("MSG_SUBJECT_PREFIX", "msg", "bus subject root")
    log_level: str = _env_field("MSG_LOG_LEVEL", "INFO", "log level")
    ops_host: str = _env_field(
        "MSG_OPS_HOST", "127.0.0.1", "ops server bind host", (NOT_GATEWAY,)
    )
    ops_port: int = _env_field(
        "MSG_OPS_PORT",
        0,
        "port of /metrics, /healthz, /readyz (0 = any)",
        (NOT_GATEWAY,),
    )
    http_host: str = _env_field(
        "MSG_HTTP_HOST", "127.0.0.1", "gateway bind host", ("gateway",)
    )
    http_port: int = _env_field(
        "MSG_HTTP_PORT", 8080, "gateway HTTP port", ("gateway",)
    )
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
    # A person has a few devices and tabs; a script opening hundreds of
    # sockets as one user would cost every gateway memory and fan-out work.
    ws_max_per_user: int = _env_field(
        "MSG_WS_MAX_PER_USER", 16, "sockets one user may hold open per gateway"
    )
    # Bus calls (sends, lists, replays) one gateway keeps waiting at once.
    # Past the bound, a call is refused at once with 503 `overloaded` rather
    # than queued: a queue that outgrows what the services drain before the
    # request timeout only turns into timeouts, and work done for callers who
    # have given up (BENCHMARKS.md, the knee).
    gateway_max_in_flight: int = _env_field(
        "MSG_GATEWAY_MAX_IN_FLIGHT",
        512,
        "bus calls a gateway keeps waiting at once; more are refused with 503",
    )
    # A garbage collection of a gateway holding 15,000 sockets takes up to a
    # third of a second; the bound sits above that, and one late sample
    # refuses nothing (services/gateway/admission.py).
    gateway_max_loop_lag: float = _env_field(
        "MSG_GATEWAY_MAX_LOOP_LAG",
        0.4,
        "seconds the gateway's event loop may run late (two samples running) "
        "before API calls are refused with 503",
    )
    fanout_partitions: int = _env_field(
        "MSG_FANOUT_PARTITIONS",
        1,
        "fanout partitions (bootstrap, fanout); run one fanout replica for each",
    )
    fanout_partition: int = _env_field(
        "MSG_FANOUT_PARTITION", 0, "the partition this fanout replica serves"
    )
    # Room for a burst of pasted lines and well above any human's typing
    # pace (3 sends a second, sustained), yet a flood is cut within seconds.
    # Tenants and users get their own values with `msgctl limits`.
    rate_limit: int = _env_field(
        "MSG_RATE_LIMIT", 30, "sends a user may make in any window (abuse guard)"
    )
    rate_window: int = _env_field(
        "MSG_RATE_WINDOW", 10, "seconds of the sliding rate-limit window"
    )
    duplicate_suppression_window: float = _env_field(
        "MSG_DUPLICATE_SUPPRESSION_WINDOW",
        30.0,
        "seconds a same-body resend to a conversation is refused (0 = off)",
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
        if self.ws_max_per_user < 1:
            raise ConfigError("MSG_WS_MAX_PER_USER must be at least 1")
        if self.gateway_max_in_flight < 1:
            raise ConfigError("MSG_GATEWAY_MAX_IN_FLIGHT must be at least 1")
        if self.gateway_max_loop_lag <= 0:
            raise ConfigError("MSG_GATEWAY_MAX_LOOP_LAG must be positive")
        if self.presence_grace < 0:
            raise ConfigError("MSG_PRESENCE_GRACE must not be negative")
        if not 0 <= self.fanout_partition < self.fanout_partitions:
            raise ConfigError(
                "MSG_FANOUT_PARTITION must be at least 0 and less than "
                "MSG_FANOUT_PARTITIONS"
            )

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


def deployment_variables(process: str) -> list[str]:
    """The variables ``process`` (a service, or ``bootstrap``) must be given
    outside the development stack."""
    out = []
    for f in fields(Settings):
        deploy = f.metadata.get("deploy", ())
        if (
            process in deploy
            or (EVERY_SERVICE in deploy)
            or (NOT_GATEWAY in deploy and process not in {"gateway", "bootstrap"})
        ):
            out.append(f.metadata["env"])
    return out


def documented_variables() -> dict[str, str]:
    """Every environment variable the services read, with its help text."""
    out = {}
    for f in fields(Settings):
        if "env" in f.metadata:
            out[f.metadata["env"]] = f.metadata["help"]
    return out
