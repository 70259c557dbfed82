"""An integrator of tenant A reads A's events, and nothing else, on a NATS
server configured exactly as every stack configures it."""

from __future__ import annotations

import asyncio
import json

import msgspec
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.bus.subjects import CONVERSATIONS_STREAM, MESSAGES_STREAM
from libs.devstack.stack import Stack
from libs.schema.events import Event, MessageAccepted
from tests.support import BusUser, Client, unique
from tools.msgctl.tail import Start, StreamReader


async def _integrator(stack: Stack, tenant: str, name: str = "crm") -> BusUser:
    entry, _ = stack.nats_auth.add_integrator(tenant, name)
    stack.nats_auth.reload_server()
    return await BusUser.connect(stack.urls["MSG_NATS_URL"], entry.user, entry.password)


def _user(tenant: str) -> str:
    return f"integrator-{tenant}-crm"


async def _create_request(
    bus: BusUser, subject: str, config: dict, timeout: float = 2.0
) -> dict:
    body = json.dumps({"stream_name": subject.split(".")[4], "config": config})
    reply = await bus.nc.request(subject, body.encode(), timeout=timeout)
    return json.loads(reply.data)


async def test_integrator_reads_its_tenants_events_live_and_from_the_stream(
    stack: Stack, client: Client
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    bus = await _integrator(stack, tenant)
    live = await bus.nc.subscribe(f"msg.evt.{tenant}.>")
    await bus.nc.flush()

    sent = await client.send(tenant, "alice", conv["id"], "for the integrator")

    assert sent.status == 201
    event = msgspec.json.decode((await live.next_msg(timeout=5)).data, type=Event)
    assert isinstance(event, MessageAccepted)
    assert event.tenant == tenant
    assert event.data.id == sent.body["id"]
    history = StreamReader(
        bus.nc,
        CONVERSATIONS_STREAM,
        consumer=_user(tenant),
        filter_subject=f"msg.evt.{tenant}.>",
        start=Start(time=msgspec.convert(conv["created_at"], type=type(event.time))),
    )
    await history.open()
    assert history.backlog == 1
    out: asyncio.Queue = asyncio.Queue()
    reading = asyncio.create_task(history.run(out))
    msg = None
    while msg is None:  # None: an idle heartbeat
        _, msg = await asyncio.wait_for(out.get(), 5)
    reading.cancel()
    await history.close()
    assert json.loads(msg.data)["data"]["id"] == conv["id"]
    assert bus.refused == []
    await bus.close()


async def test_integrator_cannot_read_another_tenants_events(
    stack: Stack, client: Client, nc: nats.NATS
) -> None:
    mine, theirs = unique("a"), unique("b")
    conv = await client.create_conversation(theirs, "alice", ["bob"])
    bus = await _integrator(stack, mine)
    user = _user(mine)

    # core subscriptions
    for pattern in (f"msg.evt.{theirs}.>", "msg.evt.*.>", "msg.>", ">"):
        sub = await bus.nc.subscribe(pattern)
        assert await bus.was_refused(f'Subscription to "{pattern}"'), pattern
    await client.send(theirs, "alice", conv["id"], "not for you")
    with pytest.raises(TimeoutError):
        await sub.next_msg(timeout=0.5)

    # replies of services and other integrators
    for inbox in ("_INBOX.>", "_INBOX_gateway.>", f"_INBOX_{_user(theirs)}.>"):
        await bus.nc.subscribe(inbox)
        assert await bus.was_refused(f'Subscription to "{inbox}"'), inbox

    # JetStream: a consumer filtered to the other tenant, under any form
    js = bus.nc.jetstream()
    with pytest.raises(TimeoutError):
        await js.add_consumer(
            MESSAGES_STREAM,
            ConsumerConfig(name=user, filter_subject=f"msg.evt.{theirs}.>"),
            timeout=0.5,
        )
    assert await bus.was_refused(
        f"$JS.API.CONSUMER.CREATE.MESSAGES.{user}.msg.evt.{theirs}.>"
    )
    mismatch = await _create_request(
        bus,
        f"$JS.API.CONSUMER.CREATE.MESSAGES.{user}.msg.evt.{mine}.>",
        {"name": user, "filter_subject": f"msg.evt.{theirs}.>", "ack_policy": "none"},
    )
    assert mismatch["error"]["err_code"] == 10131  # filter differs from subject
    plural = await _create_request(
        bus,
        f"$JS.API.CONSUMER.CREATE.MESSAGES.{user}.msg.evt.{mine}.>",
        {"name": user, "filter_subjects": [f"msg.evt.{theirs}.>"]},
    )
    assert "error" in plural
    for subject in (
        "$JS.API.CONSUMER.CREATE.MESSAGES",  # unfiltered ephemeral
        f"$JS.API.CONSUMER.CREATE.MESSAGES.{user}",  # unfiltered, named
        f"$JS.API.CONSUMER.DURABLE.CREATE.MESSAGES.{user}",
        "$JS.API.CONSUMER.MSG.NEXT.MESSAGES.store",  # the store's durable
        "$JS.API.DIRECT.GET.MESSAGES",
        "$JS.API.STREAM.MSG.GET.MESSAGES",
    ):
        with pytest.raises(TimeoutError):
            await bus.nc.request(subject, b"{}", timeout=0.3)
        assert await bus.was_refused(f'Publish to "{subject}"'), subject

    # taking over the store's durable consumer by its name
    with pytest.raises(TimeoutError):
        await _create_request(
            bus,
            f"$JS.API.CONSUMER.CREATE.MESSAGES.store.msg.evt.{mine}.>",
            {"name": "store", "filter_subject": f"msg.evt.{mine}.>"},
            timeout=0.5,
        )
    store = await nc.jetstream().consumer_info(MESSAGES_STREAM, "store")
    assert store.config.filter_subject is None
    await bus.close()


async def test_integrator_cannot_publish_commands_or_events(
    stack: Stack, client: Client, nc: nats.NATS
) -> None:
    mine, theirs = unique("a"), unique("b")
    my_conv = await client.create_conversation(mine, "alice", ["bob"])
    their_conv = await client.create_conversation(theirs, "alice", ["bob"])
    bob = await client.ws(mine, "bob")
    bus = await _integrator(stack, mine)

    for tenant, conv in ((theirs, their_conv), (mine, my_conv)):
        command = {
            "tenant": tenant,
            "sender_id": "alice",
            "conversation_id": conv["id"],
            "body": "forged",
        }
        subject = f"msg.cmd.{tenant}.message.send"
        with pytest.raises(TimeoutError):
            await bus.nc.request(subject, json.dumps(command).encode(), timeout=0.5)
        assert await bus.was_refused(f'Publish to "{subject}"')
    forged_event = f"msg.evt.{mine}.message.accepted.{my_conv['id']}"
    await bus.nc.publish(forged_event, b'{"type":"message.accepted"}')
    await bus.nc.publish(f"msg.dlv.{mine}.bob", b'{"event":"messages:new"}')

    assert await bus.was_refused(f'Publish to "{forged_event}"')
    assert await bus.was_refused(f'Publish to "msg.dlv.{mine}.bob"')
    assert await bob.quiet(0.5) == []
    for tenant, conv in ((theirs, their_conv), (mine, my_conv)):
        listed = await client.list_messages(tenant, "alice", conv["id"])
        assert listed.body["messages"] == []
    with pytest.raises(nats.js.errors.NotFoundError):
        await nc.jetstream().get_last_msg(MESSAGES_STREAM, forged_event)
    await bob.close()
    await bus.close()


async def test_a_consumers_deliver_subject_cannot_write_into_the_streams(
    stack: Stack, client: Client, nc: nats.NATS
) -> None:
    """Known gap: the body of a consumer create names its deliver subject,
    which no permission can pin, so an integrator can have the server push
    copies of its own tenant's events to any subject. Stream subjects do not
    capture them, so another tenant's event history stays intact."""
    mine, theirs = unique("a"), unique("b")
    bus = await _integrator(stack, mine)
    user = _user(mine)
    victim = f"msg.evt.{theirs}.message.accepted.victim"
    created = await _create_request(
        bus,
        f"$JS.API.CONSUMER.CREATE.CONVERSATIONS.{user}.msg.evt.{mine}.>",
        {
            "name": user,
            "filter_subject": f"msg.evt.{mine}.>",
            "deliver_subject": victim,
            "deliver_policy": DeliverPolicy.ALL.value,
            "ack_policy": AckPolicy.NONE.value,
        },
    )
    assert "error" not in created

    await client.create_conversation(mine, "alice", ["bob"])
    await asyncio.sleep(0.5)

    with pytest.raises(nats.js.errors.NotFoundError):
        await nc.jetstream().get_last_msg(MESSAGES_STREAM, victim)
    await bus.nc.jetstream().delete_consumer(CONVERSATIONS_STREAM, user)
    await bus.close()
