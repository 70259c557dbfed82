"""An event whose content PostgreSQL refuses is dead-lettered at once, with
the reason, and holds back none of the events around it."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import msgspec
import nats
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from libs.bus.consumer import Delivery, Outcome
from libs.bus.subjects import (
    CONVERSATIONS_STREAM,
    DEADLETTER_STREAM,
    MESSAGES_STREAM,
    Subjects,
)
from services.store.barrier import ProjectionBarrier
from services.store.projector import Projector, ProjectorMetrics
from services.store.repository import Repository
from tests.support import Client, accepted_event, publish_conversation, unique

SUBJECTS = Subjects()


async def _parked(nc: nats.NATS, tenant: str, timeout: float) -> nats.aio.msg.Msg:
    """The store's newest dead letter of ``tenant``, waiting up to ``timeout``."""
    js = nc.jetstream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(NotFoundError):
            return await js.get_last_msg(
                DEADLETTER_STREAM, SUBJECTS.dead_letter("store", tenant)
            )
        assert loop.time() < deadline, "not dead-lettered in time"
        await asyncio.sleep(0.1)


async def test_a_refused_event_in_a_batch_is_dead_and_the_others_are_written(
    db: asyncpg.Pool, nc: nats.NATS
) -> None:
    tenant, conv = unique(), unique("c")
    repo = Repository(db)
    projector = Projector(
        repo,
        db,
        ProjectionBarrier(nc, nc.jetstream(), repo, SUBJECTS),
        ProjectorMetrics(CollectorRegistry()),
        retention_days=365,
    )
    bodies = ["before", "nul \x00 inside", "after"]
    deliveries = [
        Delivery(
            msg=None,  # type: ignore[arg-type]  # the projector never reads it
            stream_seq=10**12 + i,
            delivered=1,
            event=accepted_event(tenant, conv, body),
        )
        for i, body in enumerate(bodies)
    ]

    outcomes = await projector.messages(deliveries)

    assert outcomes == [Outcome.ACK, Outcome.DEAD, Outcome.ACK]
    assert "CharacterNotInRepertoire" in deliveries[1].reason
    stored = await db.fetch(
        "SELECT body FROM messages WHERE conversation_id = $1 ORDER BY seq", conv
    )
    assert [r["body"] for r in stored] == ["before", "after"]


async def test_refused_events_on_the_bus_are_parked_at_once(
    client: Client, nc: nats.NATS
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    js = nc.jetstream()
    subject = SUBJECTS.message_accepted(tenant, conv["id"])
    sent = []
    for body in ["before", "nul \x00 inside", "after"]:
        event = accepted_event(tenant, conv["id"], body)
        await js.publish(
            subject, msgspec.json.encode(event), headers={"Nats-Msg-Id": event.id}
        )
        sent.append(event.id)

    parked = await _parked(nc, tenant, timeout=5)
    listed = await client.list_messages(tenant, "bob", conv["id"])

    assert parked.headers["Msg-Origin-Stream"] == MESSAGES_STREAM
    assert "CharacterNotInRepertoire" in parked.headers["Msg-Dead-Reason"]
    assert msgspec.json.decode(parked.data)["id"] == sent[1]
    assert [m["id"] for m in listed.body["messages"]] == [sent[2], sent[0]]


async def test_a_conversation_postgresql_refuses_is_parked_at_once(
    nc: nats.NATS,
) -> None:
    tenant = unique()
    conversation_id = await publish_conversation(
        nc, tenant, ["alice", "bob"], "written before titles were checked \x00"
    )

    parked = await _parked(nc, tenant, timeout=5)

    assert parked.headers["Msg-Origin-Stream"] == CONVERSATIONS_STREAM
    assert "CharacterNotInRepertoire" in parked.headers["Msg-Dead-Reason"]
    assert parked.headers["Msg-Origin-Subject"].endswith(conversation_id)
