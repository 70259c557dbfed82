"""Telling presence which sockets this gateway holds.

Opens and closes are noted without waiting (a dict update) and sent every
``FLUSH`` seconds as one report per tenant. Every heartbeat interval each open
socket is reported again, which renews its lease in presence. A tenant's
reports go one at a time, as requests, so presence applies them in order.

Reporting never holds up a socket. If presence or NATS is down the reporter
logs it and carries on: closes are retried with the next report, opens are
repeated by the next heartbeat, and if this gateway dies its sockets' leases
simply expire.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.client import Client

from libs.aio import wait_event
from libs.bus.codec import decoder, encode
from libs.bus.subjects import Subjects
from libs.schema import errors
from libs.schema.api import (
    PRESENCE_REPORT_MAX,
    PresenceReport,
    PresenceReportReply,
    SocketRef,
)
from services.gateway.metrics import GatewayMetrics
from services.gateway.sessions import Socket

log = logging.getLogger("gateway.presence")

FLUSH = 0.15  # seconds between reports; adds at most this to presence latency
# Heartbeats renew each socket's lease one by one: 15,000 sockets every 5 s
# is 3,000 entries a second into Redis, which is cheap. Far beyond that, a
# lease per gateway (its sockets tied to it) would cost less.
RETRIED_CLOSES_MAX = 50_000  # closes kept for retry while presence is down
_IN_FLIGHT = 64  # tenants reported at once


@dataclass(slots=True)
class _Changes:
    """One tenant's sockets to report, by connection id -> user id."""

    connects: dict[str, str] = field(default_factory=dict)
    heartbeats: dict[str, str] = field(default_factory=dict)
    disconnects: dict[str, str] = field(default_factory=dict)


class PresenceReporter:
    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        metrics: GatewayMetrics,
        *,
        gateway: str,
        heartbeat: float,
        timeout: float,
        flush: float = FLUSH,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._metrics = metrics
        self._gateway = gateway
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._flush = flush
        self._open: dict[str, tuple[str, str]] = {}  # connection -> tenant, user
        # The open sockets again, split into the slices that beat together
        # (one slice per flush), so a flush touches only its own slice.
        self._slices: list[dict[str, tuple[str, str]]] = [
            {} for _ in range(max(1, round(heartbeat / flush)))
        ]
        self._changes: dict[str, _Changes] = {}
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(_IN_FLIGHT)
        self._failing = False

    # ----------------------------------------------- from Sessions, no wait

    def _slice(self, connection: str) -> dict[str, tuple[str, str]]:
        return self._slices[hash(connection) % len(self._slices)]

    def connected(self, socket: Socket) -> None:
        self._open[socket.connection_id] = (socket.tenant, socket.user_id)
        self._slice(socket.connection_id)[socket.connection_id] = (
            socket.tenant,
            socket.user_id,
        )
        self._of(socket.tenant).connects[socket.connection_id] = socket.user_id

    def disconnected(self, socket: Socket) -> None:
        if self._open.pop(socket.connection_id, None) is None:
            return
        self._slice(socket.connection_id).pop(socket.connection_id, None)
        changes = self._of(socket.tenant)
        changes.heartbeats.pop(socket.connection_id, None)
        if changes.connects.pop(socket.connection_id, None) is None:
            changes.disconnects[socket.connection_id] = socket.user_id
        # else: opened and closed between two reports, so presence need not
        # hear of it at all.

    def _of(self, tenant: str) -> _Changes:
        changes = self._changes.get(tenant)
        if changes is None:
            changes = self._changes[tenant] = _Changes()
        return changes

    # ------------------------------------------------------------ reporting

    async def run(self) -> None:
        """Report until ``stop()``; then report every socket as closed."""
        # Each flush beats for one slice of the sockets, so every socket
        # beats once per interval without a burst of thousands at once. That
        # pace is kept by the clock, whatever else is slow: a loop running
        # late wakes less often, and a wake-up queues every slice that came
        # due meanwhile; a round of reports still going does not hold up the
        # next slice, which goes in the round after. (Pacing by wake-ups and
        # waiting for each round had stretched the beat past the lease TTL
        # under load, expiring live sockets: an offline and an online update
        # each, to their whole tenant.) One round at a time keeps a socket's
        # open, beats and close in order.
        loop = asyncio.get_running_loop()
        started, queued, count = loop.time(), 0, len(self._slices)
        reporting: asyncio.Task[None] | None = None
        while not await wait_event(self._stopping, self._flush):
            due = int((loop.time() - started) / self._flush)
            for tick in range(max(queued, due - count), due):
                self._queue_heartbeats(self._slices[tick % count])
            queued = due
            if reporting is None or reporting.done():
                if reporting is not None and reporting.exception() is not None:
                    log.error("presence.round_failed", exc_info=reporting.exception())
                reporting = asyncio.create_task(self._report_all())
        if reporting is not None:
            await reporting
        # Sockets still open now are closing with the process: report them
        # gone, so their users go offline after the grace, not the TTL.
        for connection, (tenant, user_id) in self._open.items():
            changes = self._of(tenant)
            if changes.connects.pop(connection, None) is None:
                changes.disconnects[connection] = user_id
        self._open.clear()
        for part in self._slices:
            part.clear()
        await self._report_all()

    def stop(self) -> None:
        self._stopping.set()

    def _queue_heartbeats(self, sockets: dict[str, tuple[str, str]]) -> None:
        for connection, (tenant, user_id) in sockets.items():
            changes = self._of(tenant)
            if connection not in changes.connects:
                changes.heartbeats[connection] = user_id

    async def _report_all(self) -> None:
        changes, self._changes = self._changes, {}
        if changes:
            await asyncio.gather(
                *(self._report_tenant(t, c) for t, c in changes.items())
            )

    async def _report_tenant(self, tenant: str, changes: _Changes) -> None:
        async with self._slots:
            for report in self._reports(tenant, changes):
                if not await self._send(report):
                    self._retry_closes(tenant, report.disconnects)

    def _reports(self, tenant: str, changes: _Changes) -> list[PresenceReport]:
        """The changes in reports of at most ``PRESENCE_REPORT_MAX`` sockets,
        in order: opens, then heartbeats, then closes."""
        entries = [
            (kind, SocketRef(user_id=user_id, connection=connection))
            for kind, found in (
                ("connects", changes.connects),
                ("heartbeats", changes.heartbeats),
                ("disconnects", changes.disconnects),
            )
            for connection, user_id in found.items()
        ]
        reports = []
        for start in range(0, len(entries), PRESENCE_REPORT_MAX):
            report = PresenceReport(tenant=tenant, gateway=self._gateway)
            for kind, ref in entries[start : start + PRESENCE_REPORT_MAX]:
                getattr(report, kind).append(ref)
            reports.append(report)
        return reports

    async def _send(self, report: PresenceReport) -> bool:
        """True if presence applied the report (or refused it for good)."""
        subject = self._subjects.presence_report(report.tenant)
        try:
            msg = await self._nc.request(subject, encode(report), timeout=self._timeout)
        except (nats.errors.Error, TimeoutError) as exc:
            return self._failed(report.tenant, repr(exc))
        try:
            reply = decoder(PresenceReportReply).decode(msg.data)
        except msgspec.DecodeError as exc:
            return self._failed(report.tenant, f"unreadable reply: {exc}")
        if reply.error is None:
            if self._failing:
                self._failing = False
                log.info("presence.report_recovered")
            return True
        if reply.error.code == errors.UNAVAILABLE:
            return self._failed(report.tenant, reply.error.message)
        # Not worth retrying: the report itself is wrong, which is our bug.
        log.error(
            "presence.report_refused",
            extra={"tenant": report.tenant, "error": reply.error.message},
        )
        return True

    def _failed(self, tenant: str, error: str) -> bool:
        self._metrics.presence_reports_failed.inc()
        if not self._failing:
            self._failing = True
            log.warning(
                "presence.report_failed", extra={"tenant": tenant, "error": error}
            )
        return False

    def _retry_closes(self, tenant: str, closes: list[SocketRef]) -> None:
        queued = sum(len(c.disconnects) for c in self._changes.values())
        if queued + len(closes) > RETRIED_CLOSES_MAX:
            # Their leases expire within the TTL anyway; only speed is lost.
            log.warning("presence.closes_dropped", extra={"count": len(closes)})
            return
        retry = self._of(tenant).disconnects
        for ref in closes:
            retry[ref.connection] = ref.user_id
