"""Ingest entry point.

Answers:   ``<p>.cmd.*.message.send``, ``<p>.cmd.*.conversation.create``
Publishes: ``message.accepted`` (MESSAGES), ``conversation.created``
           (CONVERSATIONS), each with ``Nats-Msg-Id``
Asks:      CONVERSATIONS (direct get) for members; abuse-guard about every
           send before publishing it (accepts unchecked if it is silent);
           store for late retries
Stops:     stops taking requests, answers those in flight, drains NATS
"""

from __future__ import annotations

from libs.bus.connection import connect
from libs.bus.responder import Responder
from libs.membership import MembershipDirectory
from libs.service import Runtime, run
from services.ingest.abuse import AbuseGuardClient
from services.ingest.handlers import Ingest, IngestMetrics


async def serve(rt: Runtime) -> None:
    async with connect(rt.settings) as nc:
        metrics = IngestMetrics(rt.registry)
        ingest = Ingest(
            nc,
            nc.jetstream(),
            MembershipDirectory(nc, rt.subjects),
            AbuseGuardClient(nc, rt.subjects, metrics.abuse_unchecked),
            rt.subjects,
            metrics,
            timeout=rt.settings.request_timeout,
        )
        responder = Responder(nc, rt.registry)
        await responder.serve(
            rt.subjects.send("*"), "ingest", "message.send", ingest.send
        )
        await responder.serve(
            rt.subjects.create_conversation("*"),
            "ingest",
            "conversation.create",
            ingest.create_conversation,
        )
        rt.ready_when("nats", lambda: nc.is_connected)
        await rt.stopping.wait()
        await responder.stop()


def main() -> None:
    run("ingest", serve)


if __name__ == "__main__":
    main()
