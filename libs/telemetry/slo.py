"""The SLOs of slo-baseline, and how to measure each from the services' metrics.

Each SLO names the counters or the histogram it is computed from. A
``Source`` answers with sums over every scraped process: either read
straight from their ``/metrics`` (counts since each process started) or
asked of a Prometheus server (increases over a window). The arithmetic is
the same for both, and matches the recording rules in
``infra/prometheus/rules/slo-recording.yml``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# Label matchers are full-match regular expressions, as PromQL's =~.
Matchers = Mapping[str, str]

API = "/api/messaging"


class Source(Protocol):
    def total(self, metric: str, matchers: Matchers) -> float | None:
        """Sum of a counter's (or a histogram's ``_count``) samples; ``None``
        when no process exposes the metric at all."""

    def buckets(self, histogram: str, matchers: Matchers) -> list[tuple[float, float]]:
        """Cumulative ``(le, count)`` of a histogram, summed, sorted by ``le``."""


class Status(enum.Enum):
    PASS = "pass"
    FAIL = "FAIL"
    NO_DATA = "no data"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Result:
    slo: str
    target: str
    value: str
    budget_spent: float | None  # share of the error budget used; 1.0 = all
    status: Status
    note: str = ""


@dataclass(frozen=True, slots=True)
class Ratio:
    """At least ``objective`` of the events in ``total`` are not in ``bad``."""

    slo: str
    metric: str
    total: Matchers
    bad: Matchers
    objective: float
    show_errors: bool = False  # print the error ratio, not the success ratio

    def evaluate(self, source: Source) -> Result:
        total = source.total(self.metric, self.total)
        if not total:
            return _no_data(self.slo, self._target())
        bad = source.total(self.metric, {**self.total, **self.bad}) or 0.0
        errors = bad / total
        budget = 1 - self.objective
        shown = errors if self.show_errors else 1 - errors
        return Result(
            self.slo,
            self._target(),
            f"{_percent(shown)} of {total:,.0f}",
            errors / budget,
            Status.PASS if errors <= budget else Status.FAIL,
        )

    def _target(self) -> str:
        if self.show_errors:
            return f"<= {_percent(1 - self.objective)}"
        return f">= {_percent(self.objective)}"


@dataclass(frozen=True, slots=True)
class Latency:
    """At least ``quantile`` of the observations take at most ``threshold``
    seconds (a histogram bucket edge, so the share is exact)."""

    slo: str
    histogram: str
    matchers: Matchers
    threshold: float
    quantile: float = 0.95

    def evaluate(self, source: Source) -> Result:
        target = f"p{self.quantile * 100:.0f} <= {_seconds(self.threshold)}"
        if source.total(f"{self.histogram}_count", self.matchers) is None:
            return _no_data(self.slo, target, f"no {self.histogram} series")
        buckets = source.buckets(self.histogram, self.matchers)
        count = buckets[-1][1] if buckets else 0.0
        if not count:
            return _no_data(self.slo, target)
        within = _count_at(buckets, self.threshold)
        if within is None:
            return Result(
                self.slo, target, "?", None, Status.NO_DATA, "no bucket at threshold"
            )
        slow = 1 - within / count
        budget = 1 - self.quantile
        value = quantile(self.quantile, buckets)
        return Result(
            self.slo,
            target,
            f"{_seconds(value)} ({_percent(within / count)} within)",
            slow / budget,
            Status.PASS if slow <= budget else Status.FAIL,
        )


@dataclass(frozen=True, slots=True)
class Rejections:
    """An abuse SLO that the metrics can only show the rejections of: whether
    every send over the limit (or every duplicate) was refused needs the
    sender's own count, which a load test has and the servers do not."""

    slo: str
    target: str
    reason: str

    def evaluate(self, source: Source) -> Result:
        count = source.total(
            "messaging_abuse_rejections_total", {"reason": self.reason}
        )
        if count is None:
            return _no_data(self.slo, self.target, "no abuse-guard metrics")
        return Result(
            self.slo,
            self.target,
            f"{count:,.0f} {self.reason}",
            None,
            Status.INFO,
            "share rejected needs a load test's count of sends",
        )


Objective = Ratio | Latency | Rejections

OBJECTIVES: tuple[Objective, ...] = (
    Ratio(
        "SLO-MSG-API-AVAIL",
        "messaging_http_requests_total",
        total={"route": API, "method": "GET|POST"},
        bad={"status": "5.."},
        objective=0.999,
    ),
    Latency(
        "SLO-MSG-API-LATENCY-P95 GET",
        "messaging_http_request_duration_seconds",
        {"route": API, "method": "GET"},
        threshold=0.6,
    ),
    Latency(
        "SLO-MSG-API-LATENCY-P95 POST",
        "messaging_http_request_duration_seconds",
        {"route": API, "method": "POST"},
        threshold=0.4,
    ),
    Ratio(
        "SLO-MSG-API-ERROR",
        "messaging_http_requests_total",
        total={"route": f"{API}.*"},
        bad={"status": "5.."},
        objective=0.995,
        show_errors=True,
    ),
    Latency(
        "SLO-MSG-RT-DELIVERY",
        "messaging_delivery_latency_seconds",
        {"event": "messages:new"},
        threshold=2.0,
    ),
    Latency(
        "SLO-MSG-RT-PRESENCE",
        "messaging_presence_update_latency_seconds",
        {},
        threshold=5.0,
    ),
    Rejections("SLO-MSG-SPAM-BLOCK", "100% over limit -> 429", "rate_limited"),
    Rejections("SLO-MSG-DUP-SUPPRESS", ">= 99% duplicates -> 409", "duplicate"),
)


def evaluate(source: Source) -> list[Result]:
    return [objective.evaluate(source) for objective in OBJECTIVES]


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """The q-quantile of cumulative buckets, interpolated within its bucket
    as Prometheus's ``histogram_quantile`` does."""
    count = buckets[-1][1]
    rank = q * count
    lower_le, lower_count = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(le):
                return lower_le  # past the last finite edge: report that edge
            share = (rank - lower_count) / (cumulative - lower_count)
            return lower_le + (le - lower_le) * share
        lower_le, lower_count = le, cumulative
    return lower_le


def _count_at(buckets: Sequence[tuple[float, float]], le: float) -> float | None:
    for edge, cumulative in buckets:
        if math.isclose(edge, le):
            return cumulative
    return None


def _no_data(slo: str, target: str, note: str = "no traffic yet") -> Result:
    return Result(slo, target, "-", None, Status.NO_DATA, note)


def _percent(ratio: float) -> str:
    text = f"{ratio * 100:.3f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}".rstrip("0").rstrip(".") + "s"
