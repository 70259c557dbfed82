"""Asking the abuse guard about a send, and failing open when it is silent.

When the guard does not answer (no replica up, a timeout, an error reply),
the send is accepted unchecked: refusing every message while one
non-essential service is down would turn its outage into everyone's. Each
unchecked send is counted (``messaging_ingest_abuse_unchecked_total``) and
logged at ERROR, so the gap is visible and alertable.

Shortcoming: while the guard is down, no limit holds (SLO-MSG-SPAM-BLOCK is
not met for that time) and unchecked sends are not recorded for later
duplicate checks. An in-process fallback here, like the guard's own for
Redis, would bound that; it is left out until outages of the guard show up
in the metric.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import msgspec
from nats.aio.client import Client
from prometheus_client import Counter

from libs.bus.codec import decoder, encode
from libs.bus.connection import BusError, request
from libs.bus.subjects import Subjects
from libs.schema.api import (
    AbuseCheck,
    AbuseRelease,
    AbuseReleaseReply,
    AbuseVerdict,
    SendMessage,
)
from libs.text import body_fingerprint

log = logging.getLogger("ingest.abuse")
C = TypeVar("C", bound=AbuseCheck)

# The guard answers from Redis in a millisecond, or from memory at once when
# Redis is down; only a guard that is itself gone or stuck takes this long.
# Failing open sooner under a burst would let over-limit sends through, and
# SLO-MSG-SPAM-BLOCK allows none.
CHECK_TIMEOUT = 2.0


class AbuseGuardClient:
    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        unchecked: Counter,
        *,
        timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._unchecked = unchecked
        self._timeout = timeout

    async def check(self, cmd: SendMessage, message_id: str) -> AbuseVerdict | None:
        """The guard's verdict, or None if the send goes out unchecked."""
        payload = _facts(AbuseCheck, cmd, message_id)
        try:
            reply = await request(
                self._nc,
                self._subjects.abuse_check(cmd.tenant),
                encode(payload),
                timeout=self._timeout,
                span_name="abuse-guard check",
            )
            verdict = decoder(AbuseVerdict).decode(reply.data)
        except (BusError, msgspec.DecodeError) as exc:
            self._fail_open(cmd, message_id, repr(exc))
            return None
        if verdict.error is not None or verdict.verdict is None:
            reason = verdict.error.code if verdict.error else "no verdict"
            self._fail_open(cmd, message_id, reason)
            return None
        return verdict

    async def release(self, cmd: SendMessage, message_id: str) -> None:
        """Best effort: un-record an allowed send whose publish failed."""
        payload = _facts(AbuseRelease, cmd, message_id)
        try:
            reply = await request(
                self._nc,
                self._subjects.abuse_release(cmd.tenant),
                encode(payload),
                timeout=self._timeout,
                span_name="abuse-guard release",
            )
            error = decoder(AbuseReleaseReply).decode(reply.data).error
        except (BusError, msgspec.DecodeError) as exc:
            error = repr(exc)
        if error is not None:
            # Shortcoming: the resend is then refused as a duplicate of a
            # message that does not exist, until the duplicate window passes
            # (30 s by default). A client_msg_id retry is not affected.
            log.error(
                "abuse.release_failed",
                extra={
                    "tenant": cmd.tenant,
                    "message_id": message_id,
                    "error": str(error),
                },
            )

    def _fail_open(self, cmd: SendMessage, message_id: str, error: str) -> None:
        self._unchecked.inc()
        log.error(
            "abuse.unchecked",
            extra={
                "tenant": cmd.tenant,
                "conversation": cmd.conversation_id,
                "sender": cmd.sender_id,
                "message_id": message_id,
                "error": error,
            },
        )


def _facts(kind: type[C], cmd: SendMessage, message_id: str) -> C:
    return kind(
        tenant=cmd.tenant,
        sender_id=cmd.sender_id,
        conversation_id=cmd.conversation_id,
        message_id=message_id,
        body_fingerprint=body_fingerprint(cmd.body),
        client_msg_id=cmd.client_msg_id,
    )
