"""An event a consumer cannot handle is parked in DEADLETTER and counted."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import nats
from nats.js.errors import NotFoundError

from libs.bus.subjects import DEADLETTER_STREAM, MESSAGES_STREAM, Subjects
from libs.devstack.stack import Stack
from tests.observability.conftest import sample_sum, scrape
from tests.support import unique

CONSUMERS = (("store", "messages.store"), ("fanout", "messages.fanout"))


async def _dead_letters(stack: Stack, http: aiohttp.ClientSession) -> dict[str, float]:
    counts = {}
    for service, consumer in CONSUMERS:
        families = await scrape(http, stack.service(service).url)
        counts[consumer] = sample_sum(
            families, "messaging_consumer_dead_letters_total", consumer=consumer
        )
    return counts


async def test_an_undecodable_event_is_dead_lettered_by_each_consumer(
    stack: Stack, nc: nats.NATS, http: aiohttp.ClientSession
) -> None:
    subjects = Subjects()
    tenant = unique()
    js = nc.jetstream()
    before = await _dead_letters(stack, http)
    payload = b'{"type": "message.accepted", "not": "an event we know"}'

    ack = await js.publish(
        subjects.message_accepted(tenant, unique("c")),
        payload,
        headers={"Nats-Msg-Id": unique("bad")},
    )

    parked = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        for _, consumer in CONSUMERS:
            durable = consumer.split(".")[1]
            with contextlib.suppress(NotFoundError):  # not parked yet
                parked[consumer] = await js.get_last_msg(
                    DEADLETTER_STREAM, subjects.dead_letter(durable, tenant)
                )
        # The count goes up just after the dead letter is published.
        after = await _dead_letters(stack, http)
        if len(parked) == len(CONSUMERS) and all(after[c] > before[c] for c in parked):
            break
        assert loop.time() < deadline, f"parked: {sorted(parked)}, counts: {after}"
        await asyncio.sleep(0.2)

    assert ack.stream == MESSAGES_STREAM
    for consumer, msg in parked.items():
        assert msg.data == payload
        assert msg.headers["Msg-Origin-Stream"] == MESSAGES_STREAM
        assert msg.headers["Msg-Origin-Seq"] == str(ack.seq)
        assert msg.headers["Msg-Dead-Reason"], consumer
        assert after[consumer] - before[consumer] == 1, consumer
