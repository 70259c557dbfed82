"""Streams and durable consumers, created or updated in one explicit step.

Services only bind to what this step made: nats-py's ``pull_subscribe()``
would silently keep an existing durable's old settings, so configuration
lives here and ``msgctl bootstrap`` applies it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from libs.bus.subjects import (
    AUDIT_STREAM,
    CONVERSATIONS_STREAM,
    DEADLETTER_STREAM,
    MESSAGES_STREAM,
    PRESENCE_STREAM,
    Subjects,
)

log = logging.getLogger("bus.streams")

DAY = 24 * 3600


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    stream: str
    durable: str
    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    owner: str  # the service (NATS user) that reads it
    filter_subject: str | None = None


STORE = "store"
FANOUT = "fanout"
# Fanout is split into partitions by recipient: each partition is a durable
# consumer of its own that sees every event in stream order and delivers to
# the users hashed to it (``libs.delivery.recipient_partition``), so each
# user's frames leave in seq order however many fanout replicas run. A
# deployment picks how many (MSG_FANOUT_PARTITIONS, one replica each);
# permissions are written for all of them up to this bound.
MAX_FANOUT_PARTITIONS = 16
# Shortcoming: partitions are assigned statically (MSG_FANOUT_PARTITION per
# replica), so while one partition's replica is down its users' frames wait
# for it to be restarted (by the supervisor or orchestrator); nothing hands
# the partition to a surviving replica. JetStream's pinned-client priority
# groups could, once the client library supports them.


def fanout_durable(partition: int) -> str:
    return FANOUT if partition == 0 else f"{FANOUT}-{partition}"


def stream_configs(
    subjects: Subjects, retention_days: int, duplicate_window: float
) -> list[StreamConfig]:
    common = {
        "retention": RetentionPolicy.LIMITS,
        "discard": DiscardPolicy.OLD,
        "duplicate_window": duplicate_window,
    }
    return [
        StreamConfig(
            name=MESSAGES_STREAM,
            description="Accepted messages; the source of truth for the read model.",
            subjects=[subjects.events_of("message.accepted")],
            storage=StorageType.FILE,
            max_age=float(retention_days * DAY),
            allow_direct=True,
            **common,
        ),
        StreamConfig(
            name=CONVERSATIONS_STREAM,
            description="Conversations and their members, kept for good.",
            subjects=[subjects.events_of("conversation.created")],
            storage=StorageType.FILE,
            allow_direct=True,
            **common,
        ),
        StreamConfig(
            name=AUDIT_STREAM,
            description="Sends refused by the abuse guard, for auditing.",
            subjects=[subjects.events_of("message.rejected")],
            storage=StorageType.FILE,
            max_age=float(30 * DAY),
            **common,
        ),
        StreamConfig(
            name=PRESENCE_STREAM,
            description="Presence transitions; short-lived.",
            subjects=[subjects.events_of("presence.changed")],
            storage=StorageType.MEMORY,
            max_age=3600.0,
            max_msgs_per_subject=16,
            **common,
        ),
        StreamConfig(
            name=DEADLETTER_STREAM,
            description="Events a consumer gave up on, with the reason.",
            subjects=[f"{subjects.prefix}.dlq.>"],
            storage=StorageType.FILE,
            max_age=float(30 * DAY),
            **common,
        ),
    ]


def consumers(fanout_partitions: int) -> tuple[ConsumerSpec, ...]:
    """The durable consumers of a deployment with that many fanout partitions."""
    store = (
        ConsumerSpec(
            MESSAGES_STREAM,
            STORE,
            10,
            max_deliver=8,
            max_ack_pending=20000,
            owner=STORE,
        ),
        ConsumerSpec(
            CONVERSATIONS_STREAM,
            STORE,
            10,
            max_deliver=8,
            max_ack_pending=5000,
            owner=STORE,
        ),
    )
    fanout = tuple(
        # A short ack_wait: a restarted partition waits this long for its
        # unacknowledged events to come back before it reads newer ones.
        ConsumerSpec(
            MESSAGES_STREAM,
            fanout_durable(p),
            5,
            max_deliver=8,
            max_ack_pending=20000,
            owner=FANOUT,
        )
        for p in range(fanout_partitions)
    )
    return store + fanout


# Every consumer any deployment may have (permissions, lookups).
CONSUMERS = consumers(MAX_FANOUT_PARTITIONS)


def consumer_spec(stream: str, durable: str) -> ConsumerSpec:
    for spec in CONSUMERS:
        if spec.stream == stream and spec.durable == durable:
            return spec
    raise KeyError((stream, durable))


def _consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.durable,
        description=f"{spec.durable} reading {spec.stream}",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=float(spec.ack_wait),
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        max_waiting=64,
        filter_subject=spec.filter_subject,
    )


async def bootstrap(
    js: JetStreamContext,
    subjects: Subjects,
    *,
    retention_days: int,
    duplicate_window: float,
    fanout_partitions: int = 1,
) -> None:
    """Create every stream and consumer, or bring an existing one up to date;
    remove fanout partitions beyond ``fanout_partitions``."""
    if not 1 <= fanout_partitions <= MAX_FANOUT_PARTITIONS:
        raise ValueError(f"fanout partitions must be 1 to {MAX_FANOUT_PARTITIONS}")
    for config in stream_configs(subjects, retention_days, duplicate_window):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("stream.created", extra={"stream": config.name})
        else:
            await js.update_stream(config)
            log.info("stream.updated", extra={"stream": config.name})
    wanted = consumers(fanout_partitions)
    for spec in CONSUMERS:
        if spec not in wanted:
            try:
                await js.delete_consumer(spec.stream, spec.durable)
            except NotFoundError:
                continue
            log.info(
                "consumer.deleted",
                extra={"stream": spec.stream, "consumer": spec.durable},
            )
    for spec in wanted:
        config = _consumer_config(spec)
        try:
            await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            created = True
        else:
            created = False
        # add_consumer on an existing durable updates its mutable settings.
        await js.add_consumer(spec.stream, config)
        log.info(
            "consumer.created" if created else "consumer.updated",
            extra={"stream": spec.stream, "consumer": spec.durable},
        )
