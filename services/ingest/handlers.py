"""What ingest does with a send or a conversation creation.

A send is answered only after its ``message.accepted`` event is acked by
JetStream, i.e. durable. Its ``Nats-Msg-Id`` is the message id; a send with a
``client_msg_id`` gets a message id derived from it, so a retry publishes
the same id and JetStream's duplicate window answers with the original's
sequence. Retries later than that window are found in the store. Either way
the original is compared with the send: a key reused for another
conversation or another body is refused (409 ``client_msg_id_reused``)
rather than answered with a message the client did not mean.

Before publishing, every send is put to the abuse guard (per-user limits,
duplicate bodies, known client_msg_ids). A refused send is answered 429 or
409 and never published; when the guard is silent, the send goes out
unchecked (see ``abuse.py``).
"""

from __future__ import annotations

import logging
import math

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck
from nats.js.client import JetStreamContext
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter

from libs import ids
from libs.bus import direct
from libs.bus.codec import decoder, encode, error_reply, parse_request
from libs.bus.connection import BusError, request
from libs.bus.subjects import CONVERSATIONS_STREAM, MESSAGES_STREAM, Subjects
from libs.membership import MembershipDirectory
from libs.schema import errors
from libs.schema.api import (
    AbuseVerdict,
    Conversation,
    ConversationReply,
    CreateConversation,
    GetMessage,
    GetMessageReply,
    LimitInfo,
    Message,
    ProjectConversation,
    SendMessage,
    SendReply,
    error,
)
from libs.schema.events import (
    AcceptedMessage,
    ConversationCreated,
    ConversationData,
    MessageAccepted,
)
from libs.schema.types import utc_now_ms
from libs.telemetry import tracing
from libs.text import InvalidBody, InvalidTitle, check_body, check_title
from services.ingest.abuse import AbuseGuardClient

log = logging.getLogger("ingest")
_tracer = tracing.tracer("messaging.ingest")
MAX_MEMBERS = 1000

PUBLISH_FAILURES = (nats.errors.Error, TimeoutError)
# What became of a send (messaging_ingest_sends_total); each shows from the
# start at 0.
SEND_OUTCOMES = (
    "accepted",
    "replayed",
    "invalid",
    "not_found",
    "forbidden",
    "unavailable",
    "reused",
)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sends = Counter(
            "messaging_ingest_sends_total",
            "Sends handled by ingest, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.abuse_unchecked = Counter(
            "messaging_ingest_abuse_unchecked_total",
            "Sends accepted without an abuse check because the guard did not answer.",
            registry=registry,
        )
        for outcome in SEND_OUTCOMES:
            self.sends.labels(outcome)


class Ingest:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        directory: MembershipDirectory,
        guard: AbuseGuardClient,
        subjects: Subjects,
        metrics: IngestMetrics,
        *,
        timeout: float,
    ) -> None:
        self._nc = nc
        self._js = js
        self._directory = directory
        self._guard = guard
        self._subjects = subjects
        self._metrics = metrics
        self._timeout = timeout

    def _refuse(
        self,
        outcome: str,
        code: str,
        message: str,
        *,
        limit: LimitInfo | None = None,
        **extra: object,
    ) -> bytes:
        self._metrics.sends.labels(outcome).inc()
        return encode(SendReply(error=error(code, message, **extra), limit=limit))

    async def send(self, msg: Msg) -> bytes:
        cmd = parse_request(msg, SendMessage)
        if isinstance(cmd, bytes):
            return cmd
        try:
            check_body(cmd.body)
        except InvalidBody as exc:
            return self._refuse("invalid", errors.INVALID_BODY, str(exc))
        conv = await self._directory.get(cmd.tenant, cmd.conversation_id)
        if conv is None:
            return self._refuse("not_found", errors.NOT_FOUND, "no such conversation")
        if cmd.sender_id not in conv.members:
            return self._refuse(
                "forbidden",
                errors.FORBIDDEN,
                "you are not a member of this conversation",
            )
        if cmd.client_msg_id is None:
            message_id = ids.uuid7()
        else:
            message_id = ids.message_id_for_retry(
                cmd.tenant, cmd.sender_id, cmd.client_msg_id
            )
        verdict = await self._guard.check(cmd, message_id)
        limit = verdict.limit if verdict is not None else None
        if verdict is not None and verdict.verdict == "rate_limited":
            wait = math.ceil(verdict.retry_after or 0)
            return self._refuse(
                "rate_limited",
                errors.RATE_LIMITED,
                f"too many messages; retry in {wait} s",
                limit=limit,
                retry_after=verdict.retry_after,
            )
        if verdict is not None and verdict.verdict == "duplicate":
            return self._refuse(
                "duplicate",
                errors.DUPLICATE,
                "the same message was just sent to this conversation",
                limit=limit,
                original_id=verdict.original_id,
            )
        if cmd.client_msg_id is not None and _may_be_stored(verdict):
            earlier = await self._stored(cmd.tenant, message_id)
            if earlier is not None and not _same_send(cmd, earlier):
                return await self._reused(cmd, message_id, verdict)
            if earlier is not None:
                self._metrics.sends.labels("replayed").inc()
                return encode(SendReply(message=earlier, replayed=True, limit=limit))
        return await self._publish(cmd, message_id, verdict)

    async def _reused(
        self, cmd: SendMessage, message_id: str, verdict: AbuseVerdict | None
    ) -> bytes:
        """Refuse a client_msg_id already used for another message."""
        if verdict is not None and verdict.verdict == "allow":
            # A guard that did not know the key (degraded) counted this send.
            await self._guard.release(cmd, message_id)
        log.info(
            "message.client_msg_id_reused",
            extra={
                "tenant": cmd.tenant,
                "conversation": cmd.conversation_id,
                "message_id": message_id,
            },
        )
        return self._refuse(
            "reused",
            errors.CLIENT_MSG_ID_REUSED,
            "this client_msg_id was already used for another message (another "
            "conversation or body); send a new message with a new key",
            limit=verdict.limit if verdict is not None else None,
            original_id=message_id,
        )

    async def _stored(self, tenant: str, message_id: str) -> Message | None:
        """A message already in the read model under this id (late retries)."""
        try:
            reply = await request(
                self._nc,
                self._subjects.query(tenant, "message.get"),
                encode(GetMessage(tenant=tenant, message_id=message_id)),
                timeout=min(self._timeout, 1.0),
                span_name="store message.get",
            )
        except BusError as exc:
            # The store being down must not stop sends; JetStream's duplicate
            # window still catches retries within it.
            log.warning("store.lookup_failed", extra={"error": repr(exc)})
            return None
        return decoder(GetMessageReply).decode(reply.data).message

    async def _publish(
        self, cmd: SendMessage, message_id: str, verdict: AbuseVerdict | None
    ) -> bytes:
        now = utc_now_ms()
        event = MessageAccepted(
            id=message_id,
            tenant=cmd.tenant,
            time=now,
            data=AcceptedMessage(
                id=message_id,
                conversation_id=cmd.conversation_id,
                sender_id=cmd.sender_id,
                body=cmd.body,
                created_at=now,
                client_msg_id=cmd.client_msg_id,
            ),
        )
        subject = self._subjects.message_accepted(cmd.tenant, cmd.conversation_id)
        try:
            ack = await self._publish_traced(subject, encode(event), message_id)
        except PUBLISH_FAILURES as exc:
            log.error(
                "publish.failed",
                extra={
                    "tenant": cmd.tenant,
                    "message_id": message_id,
                    "error": repr(exc),
                },
            )
            if verdict is not None and verdict.verdict == "allow":
                await self._guard.release(cmd, message_id)
            return self._refuse(
                "unavailable",
                errors.UNAVAILABLE,
                "the message could not be made durable; retry with the same "
                "client_msg_id",
                retry_after=1.0,
            )
        data = event.data
        if ack.duplicate:
            # A retry inside the duplicate window: answer the original.
            original = await direct.by_sequence(
                self._nc, MESSAGES_STREAM, ack.seq, timeout=self._timeout
            )
            if original is not None:
                data = decoder(MessageAccepted).decode(original.data).data
            if not _same_send(cmd, data):
                return await self._reused(cmd, message_id, verdict)
        outcome = "replayed" if ack.duplicate else "accepted"
        self._metrics.sends.labels(outcome).inc()
        log.debug(
            "message.accepted",
            extra={"tenant": cmd.tenant, "message_id": message_id, "seq": ack.seq},
        )
        message = Message(
            id=data.id,
            conversation_id=data.conversation_id,
            sender_id=data.sender_id,
            body=data.body,
            created_at=data.created_at,
            seq=ack.seq,
        )
        return encode(
            SendReply(
                message=message,
                replayed=bool(ack.duplicate),
                limit=verdict.limit if verdict is not None else None,
            )
        )

    async def _publish_traced(
        self, subject: str, payload: bytes, message_id: str
    ) -> PubAck:
        """Publish to MESSAGES in a producer span, whose context the event
        carries to its consumers (store, fanout)."""
        with tracing.span(
            _tracer,
            f"{MESSAGES_STREAM} publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.message.id": message_id},
        ) as span:
            headers = tracing.inject({"Nats-Msg-Id": message_id})
            ack = await self._js.publish(
                subject, payload, timeout=self._timeout, headers=headers
            )
            span.set_attribute("messaging.stream_seq", ack.seq)
            return ack

    # Shortcoming: creating conversations is not rate-limited (the abuse guard
    # only counts sends); replies are bounded in size, so a flood of them
    # cannot make anyone's list fail, but it can fill a member's list.
    async def create_conversation(self, msg: Msg) -> bytes:
        cmd = parse_request(msg, CreateConversation)
        if isinstance(cmd, bytes):
            return cmd
        if cmd.title is not None:
            try:
                check_title(cmd.title)
            except InvalidTitle as exc:
                return error_reply(errors.INVALID_REQUEST, str(exc))
        members = list(dict.fromkeys([cmd.creator_id, *cmd.members]))
        if len(members) > MAX_MEMBERS:
            return error_reply(
                errors.INVALID_REQUEST, f"at most {MAX_MEMBERS} members are allowed"
            )
        conversation_id = ids.uuid7()
        now = utc_now_ms()
        data = ConversationData(
            id=conversation_id,
            members=members,
            created_by=cmd.creator_id,
            created_at=now,
            title=cmd.title,
        )
        event = ConversationCreated(
            id=conversation_id, tenant=cmd.tenant, time=now, data=data
        )
        subject = self._subjects.conversation_created(cmd.tenant, conversation_id)
        headers = tracing.inject({"Nats-Msg-Id": conversation_id})
        try:
            await self._js.publish(
                subject,
                encode(event),
                timeout=self._timeout,
                headers=headers,
                stream=CONVERSATIONS_STREAM,
            )
        except PUBLISH_FAILURES as exc:
            log.error(
                "publish.failed", extra={"tenant": cmd.tenant, "error": repr(exc)}
            )
            return error_reply(
                errors.UNAVAILABLE,
                "the conversation could not be created",
                retry_after=1.0,
            )
        self._directory.remember(cmd.tenant, data)
        await self._project_now(cmd.tenant, conversation_id)
        log.info(
            "conversation.created",
            extra={"tenant": cmd.tenant, "conversation": conversation_id},
        )
        conversation = Conversation(
            id=conversation_id,
            members=members,
            created_by=cmd.creator_id,
            created_at=now,
            title=cmd.title,
        )
        return encode(ConversationReply(conversation=conversation))

    async def _project_now(self, tenant: str, conversation_id: str) -> None:
        """Ask the store to write the conversation now, so the creator's next
        list shows it. Best effort: the store's consumer projects it anyway."""
        try:
            await request(
                self._nc,
                self._subjects.project_conversation(tenant),
                encode(
                    ProjectConversation(tenant=tenant, conversation_id=conversation_id)
                ),
                timeout=min(self._timeout, 2.0),
                span_name="store conversation.project",
            )
        except BusError as exc:
            log.warning(
                "conversation.projection_deferred",
                extra={
                    "tenant": tenant,
                    "conversation": conversation_id,
                    "error": repr(exc),
                },
            )


def _same_send(cmd: SendMessage, earlier: Message | AcceptedMessage) -> bool:
    """Whether a send with a known client_msg_id is a true retry: the same
    conversation and the very same body (the sender is in the key)."""
    return (earlier.conversation_id, earlier.body) == (cmd.conversation_id, cmd.body)


def _may_be_stored(verdict: AbuseVerdict | None) -> bool:
    """Whether a send with a client_msg_id may repeat a stored message.

    A healthy guard remembers every client_msg_id it allowed for a day and
    says ``retry``; an unchecked or degraded answer knows nothing earlier,
    so the store is asked as well.

    Shortcoming: a key the guard has forgotten (used more than a day ago)
    gets ``allow`` and is not looked up, so a reuse of it is neither
    answered as a retry nor refused: it is published under the original's
    message id, and the store keeps the original. Asking the store on every
    keyed send would close it, at a store round trip per send; it waits
    until late reuses show up (``messaging_ingest_sends_total``).
    """
    return verdict is None or verdict.degraded or verdict.verdict == "retry"
