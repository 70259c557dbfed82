"""What the abuse guard answers over the bus: checks and releases."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from libs.bus.codec import encode, parse_request
from libs.schema.api import AbuseCheck, AbuseRelease, AbuseReleaseReply, AbuseVerdict
from services.abuse_guard.audit import AuditTrail, rejection_event
from services.abuse_guard.guard import AbuseGuard
from services.abuse_guard.metrics import AbuseMetrics

log = logging.getLogger("abuse_guard")


class AbuseHandlers:
    def __init__(
        self, guard: AbuseGuard, audit: AuditTrail, metrics: AbuseMetrics
    ) -> None:
        self._guard = guard
        self._audit = audit
        self._metrics = metrics

    async def check(self, msg: Msg) -> bytes:
        request = parse_request(msg, AbuseCheck)
        if isinstance(request, bytes):
            return request
        decision, degraded = await self._guard.check(request)
        self._metrics.checks.labels(decision.verdict).inc()
        if decision.rejected:
            self._metrics.rejections.labels(decision.verdict).inc()
            log.info(
                "message.rejected",
                extra={
                    "tenant": request.tenant,
                    "conversation": request.conversation_id,
                    "sender": request.sender_id,
                    "reason": decision.verdict,
                    "original_id": decision.original_id,
                    "retry_after": decision.retry_after,
                    "degraded": degraded,
                },
            )
            self._audit.record(rejection_event(request, decision))
        return encode(
            AbuseVerdict(
                verdict=decision.verdict,
                limit=decision.limit_info(),
                retry_after=decision.retry_after,
                original_id=decision.original_id,
                degraded=degraded,
            )
        )

    async def release(self, msg: Msg) -> bytes:
        request = parse_request(msg, AbuseRelease)
        if isinstance(request, bytes):
            return request
        released = await self._guard.release(request)
        if released:
            self._metrics.releases.inc()
        log.info(
            "send.released",
            extra={
                "tenant": request.tenant,
                "conversation": request.conversation_id,
                "sender": request.sender_id,
                "message_id": request.message_id,
                "released": released,
            },
        )
        return encode(AbuseReleaseReply(released=released))
