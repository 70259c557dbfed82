"""Read-your-writes for queries that race the projection.

A POST is answered once its event is in the stream, which can be a few
milliseconds before this store has written it to PostgreSQL. Before a query
that must see every accepted message, the store asks the stream what the
newest relevant sequence is and waits (briefly) until the projection has it.
If the wait runs out, the query is answered anyway, possibly stale, and a
warning is logged: availability wins over a late projection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from libs.aio import wait_event
from libs.bus import direct
from libs.bus.streams import STORE
from libs.bus.subjects import MESSAGES_STREAM, Subjects
from services.store.repository import Repository

log = logging.getLogger("store.barrier")


class ProjectionBarrier:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        repo: Repository,
        subjects: Subjects,
        *,
        timeout: float = 1.5,
        capacity: int = 100_000,
    ) -> None:
        self._nc = nc
        self._js = js
        self._repo = repo
        self._subjects = subjects
        self._timeout = timeout
        self._capacity = capacity
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._progress = asyncio.Event()

    def committed(self, conversation_id: str, seq: int) -> None:
        """Called after a projection commit; wakes queries waiting on it."""
        if seq > self._seen.get(conversation_id, 0):
            self._seen[conversation_id] = seq
            self._seen.move_to_end(conversation_id)
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
        self._progress.set()
        self._progress = asyncio.Event()

    async def _wait_progress(self, deadline: float) -> bool:
        """Wait for a local commit (or a short poll for other replicas)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await wait_event(self._progress, min(remaining, 0.02))
        return True

    async def conversation(self, tenant: str, conversation_id: str) -> None:
        """Wait until the conversation's newest accepted message is stored."""
        subject = self._subjects.message_accepted(tenant, conversation_id)
        newest = await direct.last_by_subject(
            self._nc, MESSAGES_STREAM, subject, timeout=self._timeout
        )
        if newest is None:
            return
        target = int(newest.headers["Nats-Sequence"])
        deadline = time.monotonic() + self._timeout
        while True:
            if self._seen.get(conversation_id, 0) >= target:
                return
            if await self._repo.message_stored(conversation_id, target):
                self.committed(conversation_id, target)
                return
            if not await self._wait_progress(deadline):
                log.warning(
                    "barrier.timed_out",
                    extra={
                        "tenant": tenant,
                        "conversation": conversation_id,
                        "seq": target,
                    },
                )
                return

    async def projection_window(self) -> tuple[int, int]:
        """``(floor, last)``: every MESSAGES event up to ``floor`` is in the
        read model (the store consumer's ack floor); those after it, up to
        the stream's ``last``, may not be yet."""
        stream = await self._js.stream_info(MESSAGES_STREAM)
        consumer = await self._js.consumer_info(MESSAGES_STREAM, STORE)
        floor = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
        return floor, stream.state.last_seq
