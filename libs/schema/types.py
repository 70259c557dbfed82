"""Constrained scalar types shared by every contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from msgspec import Meta


def whole(pattern: str) -> str:
    r"""``pattern`` anchored to the whole string, in Python as in ECMA-262.

    Python's ``$`` also matches just before a final newline, so ``^bob$``
    lets ``"bob\n"`` through (msgspec and ``re.match`` both use Python's
    engine). The lookahead refuses that newline; in ECMA-262, where the
    generated JSON Schemas are read, ``$`` is already the true end and the
    lookahead changes nothing.
    """
    return f"^{pattern}$(?!\\n)"


# Tenant, user and conversation ids travel as NATS subject tokens, so they
# may hold no dots, spaces, newlines or wildcards.
TOKEN_PATTERN = whole(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TOKEN = re.compile(TOKEN_PATTERN)


def is_id(value: str) -> bool:
    """Whether ``value`` is a valid tenant, user or conversation id."""
    return _TOKEN.match(value) is not None


CLIENT_MSG_ID_PATTERN = whole("[!-~]{1,128}")  # printable ASCII, no space
TITLE_PATTERN = whole(r"[^\x00-\x1f\x7f-\x9f]*")  # no C0, DEL or C1 control
# Each pattern as a person reads it, for error messages.
PATTERN_RULES = {
    TOKEN_PATTERN: "an id: 1 to 64 ASCII letters, digits, `_` or `-`, "
    "starting with a letter or digit",
    CLIENT_MSG_ID_PATTERN: "1 to 128 printable ASCII characters without spaces",
    TITLE_PATTERN: "text without control characters (NUL, tab, newline, ...)",
}


TenantId = Annotated[
    str, Meta(pattern=TOKEN_PATTERN, description="Tenant (company) id, from the JWT")
]
UserId = Annotated[
    str, Meta(pattern=TOKEN_PATTERN, description="User id, unique within a tenant")
]
ConversationId = Annotated[
    str, Meta(pattern=TOKEN_PATTERN, description="Conversation id")
]
MessageId = Annotated[str, Meta(description="Message id (UUID)")]
ClientMsgId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=CLIENT_MSG_ID_PATTERN,
        description="Client-chosen idempotency key: 1 to 128 printable ASCII "
        "characters, no spaces (a UUID, a counter, a hash); a retry with it "
        "answers the original message",
    ),
]
# Events keep the rules they were first published under: narrowing one in
# place would break their readers (contracts/EVOLUTION.md).
EventClientMsgId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        description="The send's client_msg_id. Sends are held to printable "
        "ASCII without spaces; events of earlier versions may hold any text",
    ),
]
Title = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=TITLE_PATTERN,
        description="1 to 200 Unicode code points, kept as sent; no control "
        "characters (C0, DEL or C1, so no NUL, tab or newline), and not blank "
        "once trimmed (whitespace and invisible format characters such as "
        "U+200B do not count)",
    ),
]
Body = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=4000,
        description="1 to 4,000 Unicode code points, no NUL, not blank once "
        "trimmed (whitespace and invisible format characters do not count)",
    ),
]
Seq = Annotated[
    int, Meta(ge=1, description="Sequence of the event in the MESSAGES stream")
]
Timestamp = Annotated[datetime, Meta(tz=True, description="UTC, RFC 3339")]

BODY_MAX_CHARS = 4000
TITLE_MAX_CHARS = 200


def utc_now_ms() -> datetime:
    """Now in UTC, truncated to the millisecond clients can represent."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
