"""Every subject on the bus, built in one place.

The tenant is the token right after the kind (``evt``, ``cmd``, ...), so one
permission such as ``msg.evt.<tenant>.>`` confines an integrator to a single
tenant; only dead letters put the consumer first. ``catalogue.py`` describes
each of these (payload, publishers, subscribers, stream) for the contracts
and the NATS permissions, and a test checks it against the methods here.

=========================================  =======================================
subject                                    meaning
=========================================  =======================================
``<p>.evt.<t>.message.accepted.<conv>``    event, MESSAGES stream
``<p>.evt.<t>.conversation.created.<c>``   event, CONVERSATIONS stream
``<p>.evt.<t>.message.rejected.<conv>``    event, AUDIT stream
``<p>.evt.<t>.presence.changed.<user>``    event, PRESENCE stream
``<p>.cmd.<t>.message.send``               request, answered by ingest
``<p>.cmd.<t>.conversation.create``        request, answered by ingest
``<p>.qry.<t>.<name>``                     request, answered by store
``<p>.store.<t>.conversation.project``     request, answered by store
``<p>.abuse.<t>.check``                    request, answered by abuse-guard
``<p>.abuse.<t>.release``                  request, answered by abuse-guard
``<p>.presence.<t>.report``                gateway socket reports to presence
``<p>.presence.<t>.query``                 request, answered by presence
``<p>.dlv.<t>.<user>``                     per-user delivery, fanout to gateways
``<p>.dlq.<consumer>.<t>``                 dead letters, DEADLETTER stream
=========================================  =======================================
"""

from __future__ import annotations

from dataclasses import dataclass

MESSAGES_STREAM = "MESSAGES"
CONVERSATIONS_STREAM = "CONVERSATIONS"
AUDIT_STREAM = "AUDIT"
PRESENCE_STREAM = "PRESENCE"
DEADLETTER_STREAM = "DEADLETTER"


@dataclass(frozen=True, slots=True)
class Subjects:
    prefix: str = "msg"

    # events
    def event(self, tenant: str, event_type: str, key: str) -> str:
        return f"{self.prefix}.evt.{tenant}.{event_type}.{key}"

    def message_accepted(self, tenant: str, conversation_id: str) -> str:
        return self.event(tenant, "message.accepted", conversation_id)

    def conversation_created(self, tenant: str, conversation_id: str) -> str:
        return self.event(tenant, "conversation.created", conversation_id)

    def message_rejected(self, tenant: str, conversation_id: str) -> str:
        return self.event(tenant, "message.rejected", conversation_id)

    def presence_changed(self, tenant: str, user_id: str) -> str:
        return self.event(tenant, "presence.changed", user_id)

    def events_of(self, event_type: str, tenant: str = "*") -> str:
        return f"{self.prefix}.evt.{tenant}.{event_type}.*"

    def tenant_events(self, tenant: str) -> str:
        return f"{self.prefix}.evt.{tenant}.>"

    # commands and queries
    def send(self, tenant: str) -> str:
        return f"{self.prefix}.cmd.{tenant}.message.send"

    def create_conversation(self, tenant: str) -> str:
        return f"{self.prefix}.cmd.{tenant}.conversation.create"

    def query(self, tenant: str, name: str) -> str:
        return f"{self.prefix}.qry.{tenant}.{name}"

    def project_conversation(self, tenant: str) -> str:
        return f"{self.prefix}.store.{tenant}.conversation.project"

    def abuse_check(self, tenant: str) -> str:
        return f"{self.prefix}.abuse.{tenant}.check"

    def abuse_release(self, tenant: str) -> str:
        return f"{self.prefix}.abuse.{tenant}.release"

    def presence_report(self, tenant: str) -> str:
        return f"{self.prefix}.presence.{tenant}.report"

    def presence_query(self, tenant: str) -> str:
        return f"{self.prefix}.presence.{tenant}.query"

    # delivery
    def delivery(self, tenant: str, user_id: str) -> str:
        return f"{self.prefix}.dlv.{tenant}.{user_id}"

    def dead_letter(self, consumer: str, tenant: str) -> str:
        return f"{self.prefix}.dlq.{consumer}.{tenant}"

    @staticmethod
    def tenant_of(subject: str) -> str:
        """The tenant token of any subject built here."""
        return subject.split(".", 3)[2]


def matches(pattern: str, subject: str) -> bool:
    """Whether NATS would deliver ``subject`` to a subscription on ``pattern``
    (``*`` is one token, a final ``>`` one or more)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)
