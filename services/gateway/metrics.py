"""The gateway's metrics: the API, sockets, and delivery as clients see it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from libs.delivery import PRESENCE_UPDATE
from libs.telemetry.metrics import LATENCY_BUCKETS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's canonical resource for a request, e.g. "/api/messaging" or
# "/api/messaging/conversations/{conversation_id}": a label with a small,
# fixed set of values, never the raw path with its ids.
UNMATCHED = "unmatched"
# The calls of the availability and latency SLOs, with the answers the SLO
# counts. A counter's label set appears on its first increment, and
# Prometheus's rate() cannot see what happened before it first scraped a
# series; these exist from the start, at zero, so the first 503s after a
# start are counted. Other statuses and routes still appear on first use.
SLO_CALLS = (("GET", ("200", "500", "503")), ("POST", ("201", "500", "503")))
SLO_ROUTE = "/api/messaging"
# Why a call was refused with 503 overloaded (services/gateway/admission.py).
SHED_LOOP_LAG = "loop_lag"
SHED_IN_FLIGHT = "in_flight"
SHED_REASONS = (SHED_LOOP_LAG, SHED_IN_FLIGHT)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "messaging_http_requests_total",
            "HTTP requests answered, by route, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "messaging_http_request_duration_seconds",
            "HTTP request latency, by route and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for method, statuses in SLO_CALLS:
            self.latency.labels(SLO_ROUTE, method)
            for status in statuses:
                self.requests.labels(SLO_ROUTE, method, status)
        self.sockets = Gauge(
            "messaging_ws_connections",
            "WebSocket connections open on this gateway.",
            registry=registry,
        )
        self.connects = Counter(
            "messaging_ws_connects_total",
            "WebSocket connections accepted.",
            registry=registry,
        )
        self.disconnects = Counter(
            "messaging_ws_disconnects_total",
            "WebSocket connections closed, by reason.",
            ["reason"],
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "messaging_delivery_latency_seconds",
            "From the accepted event's time to the write on the client's socket.",
            ["event"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.frames = Counter(
            "messaging_ws_frames_total",
            "Frames written to sockets, by event.",
            ["event"],
            registry=registry,
        )
        self.dropped_repeats = Counter(
            "messaging_ws_repeats_dropped_total",
            "Deliveries not written because the socket already had the message.",
            registry=registry,
        )
        self.presence_latency = Histogram(
            "messaging_presence_update_latency_seconds",
            "From a presence transition's time to the write of its "
            "presence:update on a peer's socket.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.presence_reports_failed = Counter(
            "messaging_presence_reports_failed_total",
            "Socket reports that did not reach presence (closes are retried; "
            "leases of sockets that cannot be reported expire).",
            registry=registry,
        )
        self.backend_in_flight = Gauge(
            "messaging_gateway_backend_in_flight",
            "Bus calls to ingest, store and presence this gateway is waiting on.",
            registry=registry,
        )
        self.shed = Counter(
            "messaging_gateway_shed_total",
            "API calls refused with 503 overloaded, by reason: loop_lag (the "
            "event loop ran later than MSG_GATEWAY_MAX_LOOP_LAG) or in_flight "
            "(MSG_GATEWAY_MAX_IN_FLIGHT calls to ingest, store and presence waiting).",
            ["reason"],
            registry=registry,
        )
        for reason in SHED_REASONS:
            self.shed.labels(reason)
        self.loop_lag = Histogram(
            "messaging_gateway_loop_lag_seconds",
            "How late the event loop ran a timer: time requests and socket "
            "writes wait before the gateway gets to them.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.presence_stale = Counter(
            "messaging_presence_updates_stale_total",
            "presence.changed events not forwarded because a later one for the "
            "same user already was.",
            registry=registry,
        )

    def frame_latency(self, event: str) -> Histogram:
        """The histogram a frame of ``event`` observes its latency in."""
        if event == PRESENCE_UPDATE:
            return self.presence_latency
        return self.delivery_latency.labels(event)

    def middleware(
        self,
    ) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                route = route_of(request)
                if not route.endswith("/ws"):  # socket lifetimes are not latency
                    self.latency.labels(route, request.method).observe(
                        time.perf_counter() - started
                    )
                self.requests.labels(route, request.method, str(status)).inc()

        return observe
