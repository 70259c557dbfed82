"""The pure rules: bodies, tokens, ids and cursors."""

from __future__ import annotations

import base64
import datetime as dt
import random
import time
import uuid

import pytest

from libs import auth, ids
from libs.schema.types import is_id
from libs.text import InvalidBody, check_body, normalise
from services.store.repository import InvalidCursor, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "body",
    [
        *("x", "😀" * 4000, "  padded  ", "e\u0301", "line\nbreak", "\u200b visible"),
        *("\u0301", "\U0001f44d\ufe0f", "\u200ba\u200b", "\x01" * 3 + "!"),
    ],
)
def test_accepted_bodies(body: str) -> None:
    check_body(body)


@pytest.mark.parametrize(
    "body",
    [
        *("", " ", "\n\t\u3000", "x" * 4001, "a\x00b", "\ud800"),
        # invisible only: format characters (Cf), fillers and separators
        *("\u200b\u200b", "\ufeff", "\u2060\u200d\u200c", "\u00ad", "\u180e"),
        *("\u3164", "\u115f\u1160", "\uffa0", "\u2800", "\ufe0f", "\u034f"),
        *("\U000e0020\U000e007f", "\u00a0\u200b \u2028", "\x01\x7f\x85"),
    ],
)
def test_refused_bodies(body: str) -> None:
    with pytest.raises(InvalidBody):
        check_body(body)


def test_normalising_is_for_comparing_only() -> None:
    assert normalise("  Cafe\u0301\t  au   lait ") == "Caf\u00e9 au lait"
    assert normalise("Hello") != normalise("hello")


def test_tokens_round_trip_and_expire() -> None:
    secret = "s" * 40
    token = auth.issue(secret, tenant="acme", user_id="alice", ttl=60)

    who = auth.verify(secret, token)

    assert (who.tenant, who.user_id) == ("acme", "alice")
    assert who.expires_at == pytest.approx(time.time() + 60, abs=2)
    stale = auth.issue(secret, tenant="acme", user_id="alice", ttl=-60)
    with pytest.raises(auth.AuthError, match="expired"):
        auth.verify(secret, stale)
    with pytest.raises(ValueError, match="must match"):
        auth.issue(secret, tenant="a.b", user_id="alice")


def test_ids() -> None:
    first, second = ids.uuid7(), ids.uuid7()

    assert uuid.UUID(first).version == 7
    assert first != second
    assert ids.message_id_for_retry("t", "u", "k") == ids.message_id_for_retry(
        "t", "u", "k"
    )
    assert ids.message_id_for_retry("t", "u", "k") != ids.message_id_for_retry(
        "t", "v", "k"
    )


def test_cursor_round_trip_and_forgery() -> None:
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)

    assert decode_cursor(encode_cursor(at, 42), int) == (at, 42)
    for forged in ("", "!!!", encode_cursor(at, "text")):
        with pytest.raises(InvalidCursor):
            decode_cursor(forged, int)


@pytest.mark.parametrize("key_type", [int, str])
def test_decoded_cursors_are_in_range_or_refused(key_type: type) -> None:
    rng = random.Random(7)
    values = ["0", "1", "-1", "2**63", "9223372036854775807", "1e3", "true", "null"]
    values += ["253402300799999999", "253402300800000000", '"a"', '"a\\u0000"']
    values += ['"c\\n"', '"' + "x" * 64 + '"', '"' + "x" * 65 + '"', "[]"]

    for _ in range(2000):
        pieces = [rng.choice(values) for _ in range(rng.choice([1, 2, 2, 3]))]
        raw = "[" + ", ".join(p.replace("2**63", str(2**63)) for p in pieces) + "]"
        if rng.random() < 0.2:
            raw = raw[: rng.randrange(len(raw))]
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        try:
            at, key = decode_cursor(cursor, key_type)
        except InvalidCursor:
            continue
        assert dt.datetime(1970, 1, 1, tzinfo=dt.UTC) <= at, raw
        if key_type is int:
            assert 0 <= key <= 2**63 - 1, raw
        else:
            assert is_id(key), raw


def test_verified_tokens_are_reused_only_until_they_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s" * 40
    tokens = auth.VerifiedTokens(secret)
    token = auth.issue(secret, tenant="acme", user_id="alice", ttl=60)
    checks = []
    real_verify = auth.verify
    monkeypatch.setattr(auth, "verify", lambda *a: checks.append(a) or real_verify(*a))

    first = tokens.verify(token)
    again = tokens.verify(token)
    later = time.time() + 60 + auth.LEEWAY + 1
    monkeypatch.setattr(time, "time", lambda: later)
    tokens.verify(token)

    assert again is first
    assert len(checks) == 2  # once at first sight, once more after expiry
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(auth.AuthError):
        tokens.verify(forged)
