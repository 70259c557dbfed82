"""The abuse guard's metrics: verdicts, rejections, and degraded operation."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AbuseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.checks = Counter(
            "messaging_abuse_checks_total",
            "Sends checked, by verdict (allow, rate_limited, duplicate, retry).",
            ["verdict"],
            registry=registry,
        )
        self.rejections = Counter(
            "messaging_abuse_rejections_total",
            "Sends refused, by reason (rate_limited, duplicate).",
            ["reason"],
            registry=registry,
        )
        self.releases = Counter(
            "messaging_abuse_releases_total",
            "Allowed sends forgotten again because they could not be made durable.",
            registry=registry,
        )
        self.degraded = Gauge(
            "messaging_abuse_degraded",
            "1 while Redis is unreachable and checks are answered from memory.",
            registry=registry,
        )
        self.degraded_checks = Counter(
            "messaging_abuse_degraded_checks_total",
            "Checks answered from this replica's memory because Redis was down.",
            registry=registry,
        )
        self.audit_failures = Counter(
            "messaging_abuse_audit_failures_total",
            "message.rejected events that could not be published.",
            registry=registry,
        )
