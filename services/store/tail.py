"""The newest accepted messages, read from the MESSAGES stream itself.

The read model trails the stream by a batch normally, and by up to an
``ack_wait`` when a store replica died holding events. Queries that must be
complete up to now (a socket resuming by seq) read that stretch from the
stream, which is the source of truth anyway.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg

from libs.bus import direct
from libs.bus.codec import decoder
from libs.bus.subjects import MESSAGES_STREAM, Subjects
from libs.membership import MembershipDirectory
from libs.schema.api import Message
from libs.schema.events import MessageAccepted

log = logging.getLogger("store.tail")


class TailTooLong(Exception):
    """The read model is further behind than a query should read around."""


class StreamTail:
    MAX_EVENTS = 20_000  # about 40 s of the target load
    IN_FLIGHT = 64

    def __init__(
        self, nc: Client, directory: MembershipDirectory, *, timeout: float
    ) -> None:
        self._nc = nc
        self._directory = directory
        self._timeout = timeout

    async def read(
        self, tenant: str, user_id: str, first: int, last: int
    ) -> list[Message]:
        """The user's messages with ``first <= seq <= last``, in seq order."""
        if last < first:
            return []
        if last - first + 1 > self.MAX_EVENTS:
            raise TailTooLong(f"{last - first + 1} events not yet projected")
        slots = asyncio.Semaphore(self.IN_FLIGHT)

        async def fetch(seq: int) -> Msg | None:
            async with slots:
                return await direct.by_sequence(
                    self._nc, MESSAGES_STREAM, seq, timeout=self._timeout
                )

        # Shortcoming: the whole window is read and decoded, though a reply
        # keeps only what fits its page (count and byte budget); a window of
        # MAX_EVENTS large messages costs hundreds of MB for one query.
        # Reading in seq order until the page is full would bound it.
        raws = await asyncio.gather(*(fetch(s) for s in range(first, last + 1)))
        out = []
        for raw in raws:
            if raw is None:  # removed by retention since
                continue
            subject = (raw.headers or {}).get("Nats-Subject", "")
            if Subjects.tenant_of(subject) != tenant:
                continue
            data = decoder(MessageAccepted).decode(raw.data).data
            conv = await self._directory.get(tenant, data.conversation_id)
            if conv is None or user_id not in conv.members:
                continue
            out.append(
                Message(
                    id=data.id,
                    conversation_id=data.conversation_id,
                    sender_id=data.sender_id,
                    body=data.body,
                    created_at=data.created_at,
                    seq=int(raw.headers["Nats-Sequence"]),
                )
            )
        if out:
            log.info(
                "tail.read",
                extra={"tenant": tenant, "events": last - first + 1, "found": len(out)},
            )
        return out
