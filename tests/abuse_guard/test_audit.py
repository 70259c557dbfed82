"""message.rejected events: published off the verdict's path, and never lost
without a trace."""

from __future__ import annotations

import logging

import msgspec
import nats
import pytest
from prometheus_client import CollectorRegistry

from libs.bus.subjects import AUDIT_STREAM, Subjects
from libs.schema.events import MessageRejected
from services.abuse_guard import audit
from services.abuse_guard.decision import Decision
from services.abuse_guard.metrics import AbuseMetrics
from tests.abuse_guard.sends import DEFAULTS, send
from tests.support import unique


def _refused(tenant: str) -> tuple[MessageRejected, str]:
    request = send(tenant, "buy now")
    decision = Decision(
        verdict="duplicate",
        policy=DEFAULTS,
        remaining=29,
        next_slot=9.0,
        original_id="earlier-id",
    )
    return audit.rejection_event(request, decision), request.conversation_id


async def test_rejections_land_on_the_audit_stream_once(nc: nats.NATS) -> None:
    registry = CollectorRegistry()
    tenant = unique()
    event, conversation = _refused(tenant)

    async with audit.AuditTrail(
        nc.jetstream(), Subjects(), AbuseMetrics(registry)
    ) as trail:
        trail.record(event)
        trail.record(event)  # the same event twice: kept once (Nats-Msg-Id)

    subject = Subjects().message_rejected(tenant, conversation)
    info = await nc.jetstream().stream_info(AUDIT_STREAM, subjects_filter=subject)
    stored = await nc.jetstream().get_last_msg(AUDIT_STREAM, subject)
    assert sum((info.state.subjects or {}).values()) == 1
    assert msgspec.json.decode(stored.data, type=MessageRejected) == event
    assert stored.headers["Nats-Msg-Id"] == event.id
    assert registry.get_sample_value("messaging_abuse_audit_failures_total") == 0


async def test_an_event_that_cannot_be_published_is_counted_and_logged(
    nc: nats.NATS,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit, "RETRY_DELAY", 0.01)
    registry = CollectorRegistry()
    event, _ = _refused(unique())

    # No stream takes subjects under this prefix: every attempt fails.
    async with audit.AuditTrail(
        nc.jetstream(), Subjects("nostream"), AbuseMetrics(registry), timeout=0.5
    ) as trail:
        trail.record(event)

    assert registry.get_sample_value("messaging_abuse_audit_failures_total") == 1
    lost = [r for r in caplog.records if r.getMessage() == "audit.publish_failed"]
    assert len(lost) == 1
    assert lost[0].levelno == logging.ERROR
    assert lost[0].event_id == event.id
    assert lost[0].reason == "duplicate"
