"""The channel catalogue agrees with the code that builds subjects, and the
permissions derived from it say what each service may do."""

from __future__ import annotations

import pytest

from libs.bus import catalogue, permissions
from libs.bus.catalogue import CHANNELS, Kind
from libs.bus.streams import stream_configs
from libs.bus.subjects import Subjects
from libs.bus.subjects import matches as subject_matches

SAMPLE = {
    "tenant": "acme",
    "conversation_id": "c1",
    "user_id": "bob",
    "consumer": "store",
}


@pytest.mark.parametrize("channel", CHANNELS, ids=lambda ch: ch.name)
def test_each_address_is_what_the_code_builds(channel: catalogue.Channel) -> None:
    subjects = Subjects("pfx")
    values = {name: SAMPLE[name] for name in channel.parameters}

    built = getattr(subjects, channel.builder)(**values, **channel.builder_args)

    assert built == channel.subject("pfx", **values)
    if channel.kind is not Kind.DEAD_LETTER:  # dlq.<consumer>.<tenant>
        assert Subjects.tenant_of(built) == "acme"


@pytest.mark.parametrize(
    "channel", [ch for ch in CHANNELS if ch.stream], ids=lambda ch: ch.name
)
def test_each_stored_channel_is_captured_by_its_stream(
    channel: catalogue.Channel,
) -> None:
    streams = {c.name: c.subjects for c in stream_configs(Subjects("msg"), 1, 1.0)}
    subject = channel.subject("msg", **SAMPLE)

    assert any(subject_matches(p, subject) for p in streams[channel.stream])


def test_services_may_publish_only_their_own_subjects() -> None:
    gateway = permissions.service_permissions("gateway")
    fanout = permissions.service_permissions("fanout")
    store = permissions.service_permissions("store")

    assert "msg.cmd.*.message.send" in gateway.publish
    assert not any(p.startswith(("msg.evt.", "$JS.")) for p in gateway.publish)
    assert fanout.publish.count("msg.dlv.*.*") == 1
    assert "msg.dlq.fanout.*" in fanout.publish
    assert "msg.dlq.store.*" not in fanout.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.MESSAGES.store" in store.publish
    assert not any("fanout" in p for p in store.publish)
    assert store.allow_responses
    assert not fanout.allow_responses
    for service in catalogue.SERVICES:
        perms = permissions.service_permissions(service)
        assert perms.subscribe[-1] == f"_INBOX_{service}.>"
        assert "_INBOX.>" not in perms.subscribe + perms.publish
        assert ">" not in perms.publish


def test_integrators_are_pinned_to_their_tenant_and_consumer_name() -> None:
    user = permissions.integrator_user("acme", "crm")

    perms = permissions.integrator_permissions("acme", user)

    assert perms.subscribe == ("msg.evt.acme.>", f"_INBOX_{user}.>")
    assert not perms.allow_responses
    for subject in perms.publish:
        assert subject.startswith(("$JS.API.CONSUMER.", "$JS.ACK.", "$JS.FC.")), subject
        assert f".{user}" in subject, subject
    creates = [p for p in perms.publish if ".CREATE." in p]
    assert sorted(creates) == sorted(
        f"$JS.API.CONSUMER.CREATE.{s}.{user}.msg.evt.acme.>"
        for s in ("MESSAGES", "CONVERSATIONS", "AUDIT", "PRESENCE")
    )


@pytest.mark.parametrize(
    ("tenant", "name"), [("acme", "CRM"), ("acme", "a-b"), ("a.b", "x"), ("acme", "")]
)
def test_integrator_names_cannot_collide(tenant: str, name: str) -> None:
    with pytest.raises(ValueError, match="must"):
        permissions.integrator_user(tenant, name)


def test_every_event_type_has_one_stream() -> None:
    events = [ch for ch in CHANNELS if ch.kind is Kind.EVENT]

    assert {catalogue.stream_of(ch.name) for ch in events} == set(
        catalogue.event_streams()
    )
    with pytest.raises(KeyError):
        catalogue.stream_of("message.send")
