"""Presence metrics: transitions, sweeps, and the state held in Redis."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from libs.telemetry.metrics import LATENCY_BUCKETS


class PresenceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reported = Counter(
            "messaging_presence_reported_sockets_total",
            "Socket entries applied from gateway reports, by kind.",
            ["kind"],
            registry=registry,
        )
        self.transitions = Counter(
            "messaging_presence_transitions_total",
            "Users going online or offline, by status and cause "
            "(connected, disconnected, expired).",
            ["status", "cause"],
            registry=registry,
        )
        self.sweeps = Counter(
            "messaging_presence_sweeps_total",
            "Sweeps of expired leases and ended graces run by this replica.",
            registry=registry,
        )
        self.expired = Counter(
            "messaging_presence_leases_expired_total",
            "Socket leases that ran out without a disconnect (a gateway died "
            "or stopped reporting).",
            registry=registry,
        )
        self.sweep_lag = Histogram(
            "messaging_presence_sweep_lag_seconds",
            "From an offline's due time (lease expiry or end of grace) to the "
            "sweep that announced it.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.leases = Gauge(
            "messaging_presence_leases",
            "Live socket leases in Redis, all tenants (the same on every replica).",
            registry=registry,
        )
        self.pending = Gauge(
            "messaging_presence_pending_offline",
            "Users whose last socket closed and whose grace has not ended yet.",
            registry=registry,
        )
        self.published = Counter(
            "messaging_presence_events_published_total",
            "presence.changed events acknowledged by JetStream.",
            registry=registry,
        )
        self.publish_failures = Counter(
            "messaging_presence_publish_failures_total",
            "Failed attempts to publish a presence.changed event (retried).",
            registry=registry,
        )
        self.backlog = Gauge(
            "messaging_presence_publish_backlog",
            "Transitions decided but not yet published.",
            registry=registry,
        )
