"""Checks as ingest would ask them, for the guard's own tests."""

from __future__ import annotations

import itertools

from libs import ids
from libs.schema.api import AbuseCheck
from libs.text import body_fingerprint
from services.abuse_guard.decision import Policy

DEFAULTS = Policy(limit=30, window=10, duplicate_window=30.0)

_counter = itertools.count()


def send(
    tenant: str,
    body: str | None = None,
    *,
    user: str = "alice",
    conversation: str = "c1",
    client_msg_id: str | None = None,
) -> AbuseCheck:
    if client_msg_id is None:
        message_id = ids.uuid7()
    else:
        message_id = ids.message_id_for_retry(tenant, user, client_msg_id)
    return AbuseCheck(
        tenant=tenant,
        sender_id=user,
        conversation_id=conversation,
        message_id=message_id,
        body_fingerprint=body_fingerprint(body or f"message {next(_counter)}"),
        client_msg_id=client_msg_id,
    )
