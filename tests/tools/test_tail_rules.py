"""How ``msgctl tail`` reads ``--since`` and ``--types``."""

from __future__ import annotations

import datetime as dt

import pytest
from nats.js.api import DeliverPolicy

from tools.msgctl.tail import TailError, parse_since, streams_for

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_since_a_duration_a_time_or_a_sequence() -> None:
    assert parse_since("90s", NOW).time == NOW - dt.timedelta(seconds=90)
    assert parse_since("2h", NOW).time == NOW - dt.timedelta(hours=2)
    assert parse_since("1d", NOW).time == NOW - dt.timedelta(days=1)
    assert parse_since("2026-02-28T10:00:00Z", NOW).time == dt.datetime(
        2026, 2, 28, 10, tzinfo=dt.UTC
    )
    by_seq = parse_since("41", NOW)
    assert by_seq.policy("MESSAGES") == {
        "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
        "opt_start_seq": 42,
    }
    assert by_seq.policy("CONVERSATIONS") == {"deliver_policy": DeliverPolicy.NEW}
    assert parse_since(None).policy("AUDIT") == {"deliver_policy": DeliverPolicy.NEW}


@pytest.mark.parametrize("raw", ["yesterday", "5 min", "2026-02-28T10:00:00", "-3"])
def test_since_refuses_what_it_cannot_read(raw: str) -> None:
    with pytest.raises(TailError, match="--since"):
        parse_since(raw, NOW)


def test_types_choose_the_streams() -> None:
    assert streams_for(None) == ["MESSAGES", "CONVERSATIONS", "AUDIT", "PRESENCE"]
    assert streams_for(["presence.changed", "message.accepted"]) == [
        "MESSAGES",
        "PRESENCE",
    ]
    with pytest.raises(TailError, match="unknown event type"):
        streams_for(["message.send"])
