"""Fanout entry point.

Consumes:  MESSAGES (durable ``fanout``, or ``fanout-<n>`` for partition n of
           MSG_FANOUT_PARTITIONS), independently of the store
Publishes: ``<p>.dlv.<tenant>.<user>`` for each member of the conversation
           whom this partition serves (each user is served by exactly one)
Asks:      CONVERSATIONS (direct get, cached) for members
Stops:     finishes the batch in hand, then drains NATS
"""

from __future__ import annotations

import asyncio
import logging

from nats.js.client import JetStreamContext

from libs.aio import wait_event
from libs.bus.connection import connect
from libs.bus.consumer import ConsumerMetrics, PullConsumer
from libs.bus.streams import ConsumerSpec, consumer_spec, fanout_durable
from libs.bus.subjects import MESSAGES_STREAM
from libs.membership import MembershipDirectory
from libs.service import Runtime, run
from services.fanout.delivery import Fanout, deliveries_counter

log = logging.getLogger("fanout")


async def serve(rt: Runtime) -> None:
    settings = rt.settings
    durable = fanout_durable(settings.fanout_partition)
    spec = consumer_spec(MESSAGES_STREAM, durable)
    async with connect(settings) as nc:
        js = nc.jetstream()
        fanout = Fanout(
            nc,
            MembershipDirectory(nc, rt.subjects),
            rt.subjects,
            deliveries=deliveries_counter(rt.registry),
            partition=settings.fanout_partition,
            partitions=settings.fanout_partitions,
        )
        consumer = PullConsumer(
            nc,
            js,
            stream=MESSAGES_STREAM,
            durable=durable,
            handler=fanout.handle,
            metrics=ConsumerMetrics(rt.registry),
            subjects=rt.subjects,
            max_deliver=spec.max_deliver,
            batch=500,
        )
        rt.ready_when("nats", lambda: nc.is_connected)
        await _let_unacknowledged_return(js, spec, rt)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(consumer.run())
            tasks.create_task(consumer.monitor())
            await rt.stopping.wait()
            consumer.stop()


async def _let_unacknowledged_return(
    js: JetStreamContext, spec: ConsumerSpec, rt: Runtime
) -> None:
    """After a crash, events the previous process took but never acked come
    back once their ack_wait passes, and JetStream hands redeliveries out
    before newer events. Reading only then keeps each user's frames in seq
    order across the restart."""
    info = await js.consumer_info(spec.stream, spec.durable)
    if info.num_ack_pending:
        log.info(
            "fanout.awaiting_redeliveries",
            extra={"consumer": spec.durable, "events": info.num_ack_pending},
        )
        await wait_event(rt.stopping, spec.ack_wait + 0.5)


def main() -> None:
    run("fanout", serve)


if __name__ == "__main__":
    main()
