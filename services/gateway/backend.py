"""Typed calls from the gateway to ingest and store over NATS."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from nats.aio.client import Client

from libs.bus.codec import decoder, encode
from libs.bus.connection import BusTimeout, NoResponders, request
from libs.schema import errors
from services.gateway.errors import ApiError

R = TypeVar("R")


class Backend:
    def __init__(self, nc: Client, *, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout

    async def call(
        self, subject: str, payload: msgspec.Struct, reply_type: type[R], name: str
    ) -> R:
        """The decoded reply; a dependency that is down becomes a 503."""
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
        return decoder(reply_type).decode(reply.data)
