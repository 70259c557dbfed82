"""Gateway entry point.

Serves:    the HTTP API, its OpenAPI document and the WebSocket under
           /api/messaging (libs/schema/http.py lists them), plus /metrics,
           /healthz and /readyz on the same port
Asks:      ingest (sends, creations), store (queries) and presence (status)
           over NATS
Consumes:  ``<p>.dlv.<tenant>.<user>`` for every user with an open socket;
           ``<p>.evt.*.presence.changed.*``, forwarded as presence:update
Reports:   its sockets' opens, heartbeats and closes to presence
Stops:     stops accepting, closes sockets with 1001 (clients reconnect
           elsewhere and resume by seq), finishes requests, reports its
           sockets closed, drains NATS
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from libs import auth
from libs.bus.connection import connect
from libs.schema import openapi
from libs.schema.http import ENDPOINTS
from libs.service import Runtime, ops_routes, run
from services.gateway.admission import LoopLag
from services.gateway.backend import Backend
from services.gateway.errors import error_middleware
from services.gateway.http_api import MessagingApi
from services.gateway.metrics import GatewayMetrics
from services.gateway.presence import PresenceReporter
from services.gateway.presence_relay import PresenceRelay
from services.gateway.sessions import CLOSE_GOING_AWAY, Sessions
from services.gateway.tracing import middleware as tracing_middleware
from services.gateway.websocket import WebSocketEndpoint

log = logging.getLogger("gateway")

# Room for a 4,000-character body of 4-byte characters written as JSON
# escapes; anything bigger is refused with 413 before it is read.
MAX_REQUEST_BYTES = 64 * 1024


def build_app(
    rt: Runtime,
    nc: object,
    sessions: Sessions,
    metrics: GatewayMetrics,
    lag: LoopLag,
) -> web.Application:
    tokens = auth.VerifiedTokens(rt.settings.require_jwt_secret())
    backend = Backend(
        nc,
        timeout=rt.settings.request_timeout,
        max_in_flight=rt.settings.gateway_max_in_flight,
        metrics=metrics,
    )
    api = MessagingApi(backend, rt.subjects, tokens)
    sockets = WebSocketEndpoint(
        sessions,
        backend,
        rt.subjects,
        metrics,
        tokens=tokens,
        queue_size=rt.settings.ws_queue_size,
    )
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES,
        middlewares=[tracing_middleware(), metrics.middleware(), error_middleware],
    )
    document = openapi.encoded()

    async def openapi_document(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    # Every documented endpoint, and only those (a missing handler is a
    # KeyError at start-up, not an undocumented or dead route).
    handlers = {
        **{operation: lag.guard(h) for operation, h in api.handlers().items()},
        "websocket": sockets.handle,
        "openapi": openapi_document,
    }
    app.add_routes(
        [web.route(e.method, e.path, handlers[e.operation]) for e in ENDPOINTS]
    )
    app.add_routes(ops_routes(rt))
    return app


async def serve(rt: Runtime) -> None:
    settings = rt.settings
    settings.require_jwt_secret()
    async with connect(settings) as nc:
        metrics = GatewayMetrics(rt.registry)
        reporter = PresenceReporter(
            nc,
            rt.subjects,
            metrics,
            gateway=settings.instance,
            heartbeat=settings.presence_heartbeat,
            timeout=min(settings.request_timeout, settings.presence_heartbeat),
        )
        sessions = Sessions(
            nc,
            rt.subjects,
            metrics,
            on_attach=reporter.connected,
            on_detach=reporter.disconnected,
            max_per_user=settings.ws_max_per_user,
        )
        relay = PresenceRelay(sessions, metrics)
        await relay.start(nc, rt.subjects)
        lag = LoopLag(metrics, max_lag=settings.gateway_max_loop_lag)
        lag.start()
        app = build_app(rt, nc, sessions, metrics, lag)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port, backlog=4096)
        await site.start()
        rt.ready_when("nats", lambda: nc.is_connected)
        log.info(
            "gateway.listening",
            extra={"url": f"http://{settings.http_host}:{settings.http_port}"},
        )
        reporting = asyncio.create_task(reporter.run())
        try:
            await rt.stopping.wait()
        finally:
            # Sockets first, so that their closes are in the last report.
            sessions.close_all(CLOSE_GOING_AWAY, "gateway shutting down")
            await runner.cleanup()
            await relay.stop()
            reporter.stop()
            await reporting
            await lag.stop()


def main() -> None:
    run("gateway", serve, own_ops=False)


if __name__ == "__main__":
    main()
