"""SLO arithmetic: quantiles as Prometheus computes them, budgets, no data."""

from __future__ import annotations

import math

import pytest

from libs.telemetry import slo
from tools.msgctl.slo import ScrapedMetrics

BUCKETS = [(0.1, 50.0), (0.4, 90.0), (0.6, 97.0), (2.0, 100.0), (math.inf, 100.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.1),  # exactly at an edge
        (0.25, 0.05),  # inside the first bucket, from 0
        (0.95, 0.4 + 0.2 * 5 / 7),  # linear inside (0.4, 0.6]
        (1.0, 2.0),
    ],
)
def test_quantile_interpolates_within_its_bucket(q: float, expected: float) -> None:
    assert slo.quantile(q, BUCKETS) == pytest.approx(expected)


def test_quantile_past_the_last_edge_is_that_edge() -> None:
    assert slo.quantile(0.99, [(1.0, 90.0), (math.inf, 100.0)]) == 1.0


def _metrics(text: str) -> ScrapedMetrics:
    metrics = ScrapedMetrics()
    metrics.add(text)
    return metrics


def _by_slo(results: list[slo.Result]) -> dict[str, slo.Result]:
    return {r.slo: r for r in results}


def test_two_replicas_are_summed_and_budgets_follow() -> None:
    replica = """
# TYPE messaging_http_requests counter
messaging_http_requests_total{route="/api/messaging",method="POST",status="201"} 998
messaging_http_requests_total{route="/api/messaging",method="POST",status="503"} 2
messaging_http_requests_total{route="/api/messaging/conversations",status="200"} 1000
messaging_http_requests_total{route="/metrics",method="GET",status="500"} 50
# TYPE messaging_delivery_latency_seconds histogram
messaging_delivery_latency_seconds_bucket{event="messages:new",le="0.4"} 80
messaging_delivery_latency_seconds_bucket{event="messages:new",le="2.0"} 90
messaging_delivery_latency_seconds_bucket{event="messages:new",le="+Inf"} 100
messaging_delivery_latency_seconds_count{event="messages:new"} 100
messaging_delivery_latency_seconds_sum{event="messages:new"} 50
"""
    results = _by_slo(slo.evaluate(_metrics(replica + replica)))

    avail = results["SLO-MSG-API-AVAIL"]
    # 4 of 2,000 failed: 0.2 %, twice the 0.1 % budget.
    assert (avail.value, avail.status) == ("99.8% of 2,000", slo.Status.FAIL)
    assert avail.budget_spent == pytest.approx(2.0)
    error = results["SLO-MSG-API-ERROR"]
    # /metrics is not an API route; 4 of 4,000 API calls failed.
    assert (error.value, error.status) == ("0.1% of 4,000", slo.Status.PASS)
    assert error.budget_spent == pytest.approx(0.2)
    delivery = results["SLO-MSG-RT-DELIVERY"]
    # 10 % over 2 s: twice the 5 % a p95 allows; p95 sits past the 2 s edge.
    assert delivery.status is slo.Status.FAIL
    assert delivery.budget_spent == pytest.approx(2.0)
    assert delivery.value == "2s (90% within)"


def test_missing_series_and_idle_series_say_so() -> None:
    idle = """
# TYPE messaging_http_request_duration_seconds histogram
# TYPE messaging_abuse_rejections counter
messaging_abuse_rejections_total{reason="duplicate"} 3
"""
    results = _by_slo(slo.evaluate(_metrics(idle)))

    get = results["SLO-MSG-API-LATENCY-P95 GET"]
    assert (get.status, get.note) == (slo.Status.NO_DATA, "no traffic yet")
    presence = results["SLO-MSG-RT-PRESENCE"]
    assert presence.status is slo.Status.NO_DATA
    assert "messaging_presence_update_latency_seconds" in presence.note
    assert results["SLO-MSG-DUP-SUPPRESS"].value == "3 duplicate"
    assert results["SLO-MSG-SPAM-BLOCK"].value == "0 rate_limited"
    assert results["SLO-MSG-SPAM-BLOCK"].status is slo.Status.INFO
