"""Every reply fits in one NATS message: pages are cut by their encoded size,
and no single item or fixed-size reply comes anywhere near the budget."""

from __future__ import annotations

import datetime as dt

import msgspec

from libs.schema.api import (
    PRESENCE_QUERY_MAX,
    Conversation,
    ConversationReply,
    Message,
    PresenceQueryReply,
    SendReply,
    UserPresence,
)
from services.ingest.handlers import MAX_MEMBERS
from services.store.repository import PAGE_BUDGET, PageBudget

NATS_MAX_PAYLOAD = 1024 * 1024
NOW = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
LONGEST_ID = "x" * 64
# Each escapes to six bytes of JSON (\u0001): the largest a character gets.
WORST_BODY = "\x01" * 4000


def _message(body: str = WORST_BODY) -> Message:
    return Message(
        id="01a24285-fff0-7005-a701-185869d9c5f7",
        conversation_id=LONGEST_ID,
        sender_id=LONGEST_ID,
        body=body,
        created_at=NOW,
        seq=2**63 - 1,
    )


def _conversation() -> Conversation:
    members = [f"{i:04d}{LONGEST_ID[4:]}" for i in range(MAX_MEMBERS)]
    return Conversation(
        id=LONGEST_ID,
        members=members,
        created_by=members[0],
        created_at=NOW,
        title="\x01" * 200,  # written before titles were checked
        last_message_at=NOW,
    )


def test_the_largest_single_items_and_replies_are_far_below_the_budget() -> None:
    users = [
        UserPresence(user_id=LONGEST_ID, status="offline", last_seen=NOW)
        for _ in range(PRESENCE_QUERY_MAX)
    ]
    largest = {
        "message": _message(),
        "conversation": _conversation(),
        "send reply": SendReply(message=_message()),
        "conversation reply": ConversationReply(conversation=_conversation()),
        "presence reply": PresenceQueryReply(users=users),
    }

    sizes = {name: len(msgspec.json.encode(v)) for name, v in largest.items()}

    assert all(size < PAGE_BUDGET / 4 for size in sizes.values()), sizes
    assert PAGE_BUDGET <= NATS_MAX_PAYLOAD / 2


def test_a_budget_takes_items_while_they_fit_and_always_the_first() -> None:
    big = _message()
    each = len(msgspec.json.encode(big)) + 1

    budget = PageBudget(total=each * 3 + 400)
    assert budget.fit([big] * 5) == 3
    assert budget.fit([big]) == 0  # what is left is too little
    assert budget.fit([_message("x")]) == 1

    tiny = PageBudget(total=10)
    assert tiny.fit([big, big]) == 1  # a page is never empty
