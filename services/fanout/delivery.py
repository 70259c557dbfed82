"""Turning one ``message.accepted`` event into per-member deliveries.

The frame is encoded once per message and published unchanged to each
member's delivery subject (format in ``libs.delivery``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import nats.errors
from nats.aio.client import Client

from libs.bus.consumer import Delivery, Outcome
from libs.bus.subjects import Subjects
from libs.delivery import NEW_MESSAGE, encode_frame, message_headers
from libs.membership import MembershipDirectory
from libs.schema.api import Message
from libs.schema.events import MessageAccepted
from libs.telemetry import tracing

log = logging.getLogger("fanout")


class Fanout:
    def __init__(
        self, nc: Client, directory: MembershipDirectory, subjects: Subjects
    ) -> None:
        self._nc = nc
        self._directory = directory
        self._subjects = subjects

    async def handle(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        outcomes = []
        for d in deliveries:
            outcomes.append(await self._deliver(d))
        return outcomes

    async def _deliver(self, d: Delivery) -> Outcome:
        event = d.event
        if not isinstance(event, MessageAccepted):
            d.reason = f"unexpected event type {type(event).__name__}"
            return Outcome.DEAD
        data = event.data
        try:
            conv = await self._directory.get(event.tenant, data.conversation_id)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("members.lookup_failed", extra={"error": repr(exc)})
            return Outcome.RETRY
        if conv is None:
            d.reason = "conversation not found"
            return Outcome.DEAD
        message = Message(
            id=data.id,
            conversation_id=data.conversation_id,
            sender_id=data.sender_id,
            body=data.body,
            created_at=data.created_at,
            seq=d.stream_seq,
        )
        payload = encode_frame(NEW_MESSAGE, message)
        headers = message_headers(message)
        tracing.inject(headers, d.trace_context)
        try:
            for member in conv.members:
                await self._nc.publish(
                    self._subjects.delivery(event.tenant, member),
                    payload,
                    headers=headers,
                )
        except nats.errors.Error as exc:
            # Members already served get it again on retry; gateways drop
            # repeats by message id.
            log.warning("delivery.publish_failed", extra={"error": repr(exc)})
            return Outcome.RETRY
        return Outcome.ACK
