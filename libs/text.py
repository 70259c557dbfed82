"""Rules for message bodies: what is accepted, and how two bodies compare.

A body is stored exactly as sent. Normalising (NFC, trimmed, inner
whitespace collapsed) is only for deciding whether two sends are the same.
"""

from __future__ import annotations

import hashlib
import unicodedata

from libs.schema.types import BODY_MAX_CHARS


class InvalidBody(ValueError):
    """The body breaks a rule; the message says which, for the client."""


def check_body(body: str) -> None:
    length = len(body)  # code points, not bytes or UTF-16 units
    if length == 0:
        raise InvalidBody("body must not be empty")
    if length > BODY_MAX_CHARS:
        raise InvalidBody(
            f"body is {length} characters; at most {BODY_MAX_CHARS} are allowed"
        )
    if "\x00" in body:
        raise InvalidBody("body must not contain NUL characters")
    if not body.strip():
        raise InvalidBody("body must not be blank")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from \ud800-style escapes
        raise InvalidBody("body must be valid UTF-8 text") from exc


def normalise(body: str) -> str:
    """The form two bodies are compared in: NFC, whitespace runs as one space."""
    return " ".join(unicodedata.normalize("NFC", body).split())


def body_fingerprint(body: str) -> str:
    return hashlib.sha256(normalise(body).encode("utf-8")).hexdigest()
