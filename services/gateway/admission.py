"""Refusing API calls while the gateway is at capacity.

One process serves every socket and request of a gateway on one event loop.
When requests arrive faster than the loop (or the machine under it) can
serve them, they wait in front of it, and so does everything else the loop
does: socket writes, and the heartbeats that keep its sockets' leases in
presence alive. The queue grows until requests time out on the client, after
the work for them was done anyway.

So the gateway measures how late its loop runs (a timer that should fire
every ``interval``), and while it has been later than ``max_lag`` on two
samples running, API calls are answered 503 ``overloaded`` before they cost
anything else. One late sample (a garbage collection, say) refuses nothing.
WebSockets are not refused here: an open socket costs little until it is
written to, and refusing reconnects would strand clients. The other bound,
on calls waiting for the services behind, is in ``backend.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from libs.schema import errors
from services.gateway.errors import ApiError
from services.gateway.metrics import SHED_LOOP_LAG, GatewayMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def overloaded() -> ApiError:
    """The refusal: nothing was done, so any call is safe to retry."""
    return ApiError(
        errors.OVERLOADED, "the gateway is at capacity; retry later", retry_after=1
    )


class LoopLag:
    def __init__(
        self, metrics: GatewayMetrics, *, max_lag: float, interval: float = 0.1
    ) -> None:
        self._metrics = metrics
        self._max_lag = max_lag
        self._interval = interval
        self._late = 0  # samples running that were later than max_lag
        self._task: asyncio.Task[None] | None = None

    @property
    def behind(self) -> bool:
        return self._late >= 2

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self._interval)
            self.observe(loop.time() - started - self._interval)

    def observe(self, lag: float) -> None:
        self._metrics.loop_lag.observe(lag)
        self._late = self._late + 1 if lag > self._max_lag else 0

    def guard(self, handler: Handler) -> Handler:
        """``handler``, refused with 503 while the loop is behind."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.behind:
                self._metrics.shed.labels(SHED_LOOP_LAG).inc()
                raise overloaded()
            return await handler(request)

        return guarded
