"""Fanout entry point.

Consumes:  MESSAGES (durable ``fanout``), independently of the store
Publishes: ``<p>.dlv.<tenant>.<user>`` for each member of the conversation
Asks:      CONVERSATIONS (direct get, cached) for members
Stops:     finishes the batch in hand, then drains NATS
"""

from __future__ import annotations

import asyncio

from libs.bus.connection import connect
from libs.bus.consumer import ConsumerMetrics, PullConsumer
from libs.bus.streams import FANOUT, consumer_spec
from libs.bus.subjects import MESSAGES_STREAM
from libs.membership import MembershipDirectory
from libs.service import Runtime, run
from services.fanout.delivery import Fanout


async def serve(rt: Runtime) -> None:
    async with connect(rt.settings) as nc:
        fanout = Fanout(nc, MembershipDirectory(nc, rt.subjects), rt.subjects)
        consumer = PullConsumer(
            nc,
            nc.jetstream(),
            stream=MESSAGES_STREAM,
            durable=FANOUT,
            handler=fanout.handle,
            metrics=ConsumerMetrics(rt.registry),
            subjects=rt.subjects,
            max_deliver=consumer_spec(MESSAGES_STREAM, FANOUT).max_deliver,
            batch=500,
        )
        rt.ready_when("nats", lambda: nc.is_connected)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(consumer.run())
            tasks.create_task(consumer.monitor())
            await rt.stopping.wait()
            consumer.stop()


def main() -> None:
    run("fanout", serve)


if __name__ == "__main__":
    main()
