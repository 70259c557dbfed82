"""Connecting to NATS, and making traced requests over it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from opentelemetry import trace

from libs.bus.permissions import inbox_prefix
from libs.config import Settings
from libs.telemetry import tracing

log = logging.getLogger("bus")
_tracer = tracing.tracer("messaging.bus")


class BusError(Exception):
    """A dependency reached over the bus did not answer; the caller may retry."""


class NoResponders(BusError):
    """Nobody subscribes to the subject: the service is down or not started."""


class BusTimeout(BusError):
    """The service did not answer in time; the outcome is unknown."""


@asynccontextmanager
async def connect(settings: Settings, **options: object) -> AsyncIterator[Client]:
    """A connection that reconnects forever and drains when the block exits."""

    async def on_disconnect() -> None:
        log.warning("nats.disconnected", extra={"url": settings.nats_url})

    async def on_reconnect() -> None:
        log.info("nats.reconnected", extra={"url": settings.nats_url})

    async def on_error(exc: Exception) -> None:
        # The server refused a publish or subscription: a subject missing
        # from this service's permissions (libs/bus/permissions.py), i.e. a
        # bug that would otherwise show only as requests timing out.
        if "permissions violation" in str(exc).lower():
            log.error("nats.permission_denied", extra={"error": str(exc)})
        else:
            log.warning("nats.error", extra={"error": repr(exc)})

    params: dict[str, object] = {
        "servers": settings.nats_url.split(","),
        "name": settings.instance,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
        # A gateway with thousands of sockets receives bursts; keep the
        # client's buffer well above the default before it drops messages.
        "pending_size": 64 * 1024 * 1024,
    }
    if settings.nats_user:
        params["user"] = settings.nats_user
        params["password"] = settings.nats_password
        params["inbox_prefix"] = inbox_prefix(settings.nats_user)
    params.update(options)
    nc = await nats.connect(**params)
    log.info("nats.connected", extra={"url": nc.connected_url.netloc})
    try:
        yield nc
    finally:
        if not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), timeout=5)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("nats.drain_failed", extra={"error": repr(exc)})
                await nc.close()


async def request(
    nc: Client,
    subject: str,
    payload: bytes,
    *,
    timeout: float,
    span_name: str,
) -> Msg:
    """A request carrying the caller's trace context, with typed failures."""
    with tracing.span(
        _tracer,
        span_name,
        kind=trace.SpanKind.CLIENT,
        attributes={"messaging.subject": subject},
    ):
        headers = tracing.inject({}) or None
        try:
            return await nc.request(subject, payload, timeout=timeout, headers=headers)
        except NoRespondersError as exc:
            raise NoResponders(subject) from exc
        except TimeoutError as exc:
            raise BusTimeout(subject) from exc
