"""Typed calls from the gateway to ingest, store and presence over NATS.

The calls a gateway waits on at once are bounded. Past the bound a call is
refused at once (503 ``overloaded``) instead of joining a queue that, once
it is longer than what the services drain within the request timeout,
only produces timeouts and work for callers who have already given up. A
refused send was never published, so nothing is lost; the client retries
after ``Retry-After``.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from nats.aio.client import Client

from libs.bus.codec import decoder, encode
from libs.bus.connection import BusTimeout, NoResponders, request
from libs.schema import errors
from services.gateway.admission import overloaded
from services.gateway.errors import ApiError
from services.gateway.metrics import SHED_IN_FLIGHT, GatewayMetrics

R = TypeVar("R")


class Backend:
    def __init__(
        self,
        nc: Client,
        *,
        timeout: float,
        max_in_flight: int,
        metrics: GatewayMetrics,
    ) -> None:
        self._nc = nc
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._metrics = metrics

    async def call(
        self, subject: str, payload: msgspec.Struct, reply_type: type[R], name: str
    ) -> R:
        """The decoded reply; a dependency that is down, or more calls in
        flight than the bound, becomes a 503."""
        if self._in_flight >= self._max_in_flight:
            self._metrics.shed.labels(SHED_IN_FLIGHT).inc()
            raise overloaded()
        self._in_flight += 1
        self._metrics.backend_in_flight.inc()
        try:
            reply = await request(
                self._nc,
                subject,
                encode(payload),
                timeout=self._timeout,
                span_name=name,
            )
        except NoResponders as exc:
            raise ApiError(
                errors.UNAVAILABLE,
                f"{name} is not available; retry later",
                retry_after=1,
            ) from exc
        except BusTimeout as exc:
            raise ApiError(
                errors.UNAVAILABLE,
                f"{name} did not answer in time; retry",
                retry_after=1,
            ) from exc
        finally:
            self._in_flight -= 1
            self._metrics.backend_in_flight.dec()
        return decoder(reply_type).decode(reply.data)
