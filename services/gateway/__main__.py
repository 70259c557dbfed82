"""Gateway entry point.

Serves:    the HTTP API and WebSocket under /api/messaging, plus /metrics,
           /healthz and /readyz on the same port
Asks:      ingest (sends, creations) and store (queries) over NATS
Consumes:  ``<p>.dlv.<tenant>.<user>`` for every user with an open socket
Stops:     stops accepting, closes sockets with 1001 (clients reconnect
           elsewhere and resume by seq), finishes requests, drains NATS
"""

from __future__ import annotations

import logging

from aiohttp import web

from libs.bus.connection import connect
from libs.service import Runtime, ops_routes, run
from services.gateway.backend import Backend
from services.gateway.errors import error_middleware
from services.gateway.http_api import BASE, MessagingApi
from services.gateway.metrics import GatewayMetrics
from services.gateway.sessions import CLOSE_GOING_AWAY, Sessions
from services.gateway.tracing import middleware as tracing_middleware
from services.gateway.websocket import WebSocketEndpoint

log = logging.getLogger("gateway")

# Room for a 4,000-character body of 4-byte characters written as JSON
# escapes; anything bigger is refused with 413 before it is read.
MAX_REQUEST_BYTES = 64 * 1024


def build_app(
    rt: Runtime, nc: object, sessions: Sessions, metrics: GatewayMetrics
) -> web.Application:
    secret = rt.settings.require_jwt_secret()
    backend = Backend(nc, timeout=rt.settings.request_timeout)
    api = MessagingApi(backend, rt.subjects, secret)
    sockets = WebSocketEndpoint(
        sessions,
        backend,
        rt.subjects,
        metrics,
        jwt_secret=secret,
        queue_size=rt.settings.ws_queue_size,
    )
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES,
        middlewares=[tracing_middleware(), metrics.middleware(), error_middleware],
    )
    app.add_routes(api.routes())
    app.add_routes([web.get(f"{BASE}/ws", sockets.handle)])
    app.add_routes(ops_routes(rt))
    return app


async def serve(rt: Runtime) -> None:
    settings = rt.settings
    settings.require_jwt_secret()
    async with connect(settings) as nc:
        metrics = GatewayMetrics(rt.registry)
        sessions = Sessions(nc, rt.subjects, metrics)
        app = build_app(rt, nc, sessions, metrics)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port, backlog=4096)
        await site.start()
        rt.ready_when("nats", lambda: nc.is_connected)
        log.info(
            "gateway.listening",
            extra={"url": f"http://{settings.http_host}:{settings.http_port}"},
        )
        try:
            await rt.stopping.wait()
        finally:
            sessions.close_all(CLOSE_GOING_AWAY, "gateway shutting down")
            await runner.cleanup()


def main() -> None:
    run("gateway", serve, own_ops=False)


if __name__ == "__main__":
    main()
