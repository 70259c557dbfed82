"""A server span for every HTTP request, parent of the bus calls it makes.

The span continues a W3C ``traceparent`` sent by the client (or a proxy in
front of the gateway), else it starts the trace. Its context reaches ingest
and store through the NATS headers that ``libs.bus.connection.request``
writes. WebSocket sessions get no request span: one would last as long as
the socket, hours; each delivery they receive has its own span instead
(``services.gateway.sessions``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from libs.telemetry import tracing
from services.gateway.metrics import route_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_tracer = tracing.tracer("messaging.gateway")


def middleware() -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def trace_request(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        route = route_of(request)
        if route.endswith("/ws"):
            return await handler(request)
        with tracing.span(
            _tracer,
            f"{request.method} {route}",
            parent=request.headers,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route},
        ) as span:
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    return trace_request
