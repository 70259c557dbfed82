"""NATS permissions for every service, the admin and tenant integrators.

Everything here is derived from the channel catalogue and the durable
consumers, so a service may publish only what the catalogue says it
publishes and subscribe only to what it says it answers or reads.

Replies: every user gets its own inbox prefix (``_INBOX_<user>``), and may
subscribe only under it, so no one can read another user's replies; services
that answer requests use ``allow_responses`` instead of a publish right on
anyone's inbox.

Integrators of one tenant may subscribe to ``<p>.evt.<tenant>.>`` and read the
event streams through consumers they create, filtered to that tenant. The
JetStream create subject carries the consumer's name and its filter
(``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``), and the server refuses
a request whose body asks for another filter, so pinning both in the
permission keeps the consumer inside the tenant. The name is pinned to the
integrator's user name: with a wildcard name an integrator could *update* a
service's durable consumer (``store``) and narrow its filter to one tenant.

Known gap: the create request's body also names the consumer's deliver
subject, which no permission can pin, so an integrator can have the server
push copies of its own tenant's events to any subject of the account. Stream
subjects do not capture them (a test shows it), and every service checks a
payload against the tenant of its subject, but a subscriber could be sent
noise. Closing it takes an account per integrator, holding a stream that
sources its tenant's events; that would also lift this model's limit of one
consumer per stream per integrator (the one named after it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from libs.bus import catalogue
from libs.bus.catalogue import CHANNELS, FANOUT, INGEST, STORE
from libs.bus.streams import CONSUMERS
from libs.bus.subjects import CONVERSATIONS_STREAM, MESSAGES_STREAM
from libs.schema.types import TOKEN_PATTERN, is_id, whole

ADMIN = "admin"
INTEGRATOR_NAME = re.compile(whole("[a-z0-9]{1,32}"))


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """JetStream reads a service makes besides its durable consumers."""

    stream: str
    direct_get: bool = False  # single messages by subject or sequence
    info: bool = False  # stream state (the store's projection barrier)


STREAM_ACCESS: dict[str, tuple[StreamAccess, ...]] = {
    # members (membership directory), and the original of a repeated send
    INGEST: (
        StreamAccess(CONVERSATIONS_STREAM, direct_get=True),
        StreamAccess(MESSAGES_STREAM, direct_get=True),
    ),
    STORE: (
        StreamAccess(CONVERSATIONS_STREAM, direct_get=True),
        StreamAccess(MESSAGES_STREAM, direct_get=True, info=True),
    ),
    FANOUT: (StreamAccess(CONVERSATIONS_STREAM, direct_get=True),),
}


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password: str  # a literal, or ``$VARIABLE`` for the server's environment
    permissions: Permissions | None  # None: everything (the admin)


def inbox_prefix(user: str) -> str:
    """The reply-subject prefix of ``user``'s connections."""
    return f"_INBOX_{user}" if user else "_INBOX"


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def service_permissions(service: str, prefix: str = "msg") -> Permissions:
    publish: list[str] = []
    subscribe: list[str] = []
    answers = False
    for ch in CHANNELS:
        if service in ch.publishers:
            own = {ch.own_token: service} if ch.own_token else {}
            publish.append(ch.subject(prefix, **own))
        if service in ch.subscribers:
            subscribe.append(ch.subject(prefix))
            answers = answers or ch.reply is not None
    for access in STREAM_ACCESS.get(service, ()):
        if access.direct_get:
            publish.append(f"$JS.API.DIRECT.GET.{access.stream}")
            publish.append(f"$JS.API.DIRECT.GET.{access.stream}.>")
        if access.info:
            publish.append(f"$JS.API.STREAM.INFO.{access.stream}")
    for spec in CONSUMERS:
        if spec.owner == service:
            publish.append(f"$JS.API.CONSUMER.INFO.{spec.stream}.{spec.durable}")
            publish.append(f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}")
            publish.append(f"$JS.ACK.{spec.stream}.{spec.durable}.>")
    subscribe.append(f"{inbox_prefix(service)}.>")
    return Permissions(_unique(publish), _unique(subscribe), allow_responses=answers)


def integrator_user(tenant: str, name: str) -> str:
    """The NATS user (and consumer name) of integrator ``name`` of ``tenant``.

    ``name`` has no ``-``, so the last ``-`` separates it from the tenant and
    two integrators never share a user name.
    """
    if not is_id(tenant):
        raise ValueError(f"tenant must match {TOKEN_PATTERN}")
    if not INTEGRATOR_NAME.match(name):
        raise ValueError("integrator name must be 1-32 lowercase letters or digits")
    return f"integrator-{tenant}-{name}"


def integrator_permissions(tenant: str, user: str, prefix: str = "msg") -> Permissions:
    events = f"{prefix}.evt.{tenant}.>"
    publish: list[str] = []
    for stream in catalogue.event_streams():
        publish += [
            f"$JS.API.CONSUMER.CREATE.{stream}.{user}.{events}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{user}",
            f"$JS.API.CONSUMER.INFO.{stream}.{user}",
            f"$JS.API.CONSUMER.DELETE.{stream}.{user}",
            f"$JS.ACK.{stream}.{user}.>",
            # flow-control answers, for a push consumer delivering to its inbox
            f"$JS.FC.{stream}.{user}.*",
        ]
    return Permissions(tuple(publish), (events, f"{inbox_prefix(user)}.>"))


# ------------------------------------------------------------ server config


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _user_block(user: User) -> str:
    password = user.password
    if not password.startswith("$"):
        password = f'"{password}"'
    lines = [f'    {{ user: "{user.name}", password: {password}']
    perms = user.permissions
    if perms is not None:
        publish = _quoted(perms.publish) if perms.publish else ""
        lines.append("      permissions: {")
        lines.append(
            f"        publish: {{ allow: [{publish}] }}"
            if publish
            else '        publish: { deny: [">"] }'
        )
        lines.append(f"        subscribe: {{ allow: [{_quoted(perms.subscribe)}] }}")
        if perms.allow_responses:
            lines.append("        allow_responses: true")
        lines.append("      }")
    lines.append("    }")
    return "\n".join(lines)


def authorization(users: Iterable[User]) -> str:
    """The ``authorization`` block of a nats-server configuration."""
    blocks = "\n".join(_user_block(user) for user in users)
    return f"authorization {{\n  users = [\n{blocks}\n  ]\n}}\n"
