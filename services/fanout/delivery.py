"""Turning one ``message.accepted`` event into per-member deliveries.

The frame is encoded once per message and published unchanged to each
member's delivery subject (format in ``libs.delivery``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import nats.errors
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter

from libs.bus.consumer import Delivery, Outcome
from libs.bus.subjects import Subjects
from libs.delivery import (
    NEW_MESSAGE,
    encode_frame,
    message_headers,
    recipient_partition,
)
from libs.membership import MembershipDirectory, deliverable
from libs.schema.api import Message
from libs.schema.events import MessageAccepted
from libs.telemetry import tracing

log = logging.getLogger("fanout")


def deliveries_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "messaging_fanout_deliveries_total",
        "Per-user delivery frames published (a message to N served members "
        "counts N; a retried batch counts again).",
        registry=registry,
    )


class Fanout:
    """Delivers to the members of each conversation that this partition
    serves (all of them when there is one partition)."""

    def __init__(
        self,
        nc: Client,
        directory: MembershipDirectory,
        subjects: Subjects,
        *,
        deliveries: Counter,
        partition: int = 0,
        partitions: int = 1,
        capacity: int = 100_000,
    ) -> None:
        """``deliveries``: counts per-user frames published by this replica."""
        self._deliveries = deliveries
        self._nc = nc
        self._directory = directory
        self._subjects = subjects
        self._partition = partition
        self._partitions = partitions
        self._capacity = capacity
        # conversation -> delivery subjects of its members in this partition;
        # members never change, so this never goes stale.
        self._targets: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()

    def _subjects_for(
        self, tenant: str, conversation_id: str, members: list[str]
    ) -> tuple[str, ...]:
        key = (tenant, conversation_id)
        found = self._targets.get(key)
        if found is None:
            valid, invalid = deliverable(members)
            if invalid:
                # Stored before ids were checked to their true end: no subject
                # can carry them, and retrying would only hold back everyone
                # else's copy. Logged once per conversation (it is cached).
                log.warning(
                    "delivery.undeliverable_members",
                    extra={
                        "tenant": tenant,
                        "conversation": conversation_id,
                        "members": [repr(m) for m in invalid[:10]],
                        "count": len(invalid),
                    },
                )
            found = tuple(
                self._subjects.delivery(tenant, member)
                for member in valid
                if recipient_partition(tenant, member, self._partitions)
                == self._partition
            )
            self._targets[key] = found
            if len(self._targets) > self._capacity:
                self._targets.popitem(last=False)
        return found

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
        targets = self._subjects_for(event.tenant, conv.id, conv.members)
        if not targets:
            return Outcome.ACK  # no member of this conversation is ours
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
            for subject in targets:
                await self._nc.publish(subject, payload, headers=headers)
            self._deliveries.inc(len(targets))
        except nats.errors.Error as exc:
            # Members already served get it again on retry; gateways drop
            # repeats by message id.
            log.warning("delivery.publish_failed", extra={"error": repr(exc)})
            return Outcome.RETRY
        return Outcome.ACK
