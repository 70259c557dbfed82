"""Requests presence answers: gateways' socket reports and status queries."""

from __future__ import annotations

from nats.aio.msg import Msg

from libs.bus.codec import encode, parse_request
from libs.schema.api import (
    PresenceQuery,
    PresenceQueryReply,
    PresenceReport,
    PresenceReportReply,
)
from services.presence.metrics import PresenceMetrics
from services.presence.publisher import TransitionPublisher
from services.presence.store import PresenceStore

_APPLIED = encode(PresenceReportReply())


class PresenceHandlers:
    def __init__(
        self,
        store: PresenceStore,
        publisher: TransitionPublisher,
        metrics: PresenceMetrics,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._metrics = metrics

    async def report(self, msg: Msg) -> bytes:
        report = parse_request(msg, PresenceReport)
        if isinstance(report, bytes):
            return report
        transitions = await self._store.report(report)
        self._publisher.submit(transitions)
        for kind, entries in (
            ("connect", report.connects),
            ("heartbeat", report.heartbeats),
            ("disconnect", report.disconnects),
        ):
            if entries:
                self._metrics.reported.labels(kind).inc(len(entries))
        return _APPLIED

    async def query(self, msg: Msg) -> bytes:
        query = parse_request(msg, PresenceQuery)
        if isinstance(query, bytes):
            return query
        users = await self._store.query(query.tenant, query.user_ids)
        return encode(PresenceQueryReply(users=users))
