"""Rules for message bodies and titles: what is accepted, and how two
bodies compare.

Both are stored exactly as sent. Normalising (NFC, trimmed, inner
whitespace collapsed) is only for deciding whether two sends are the same.
Neither may be blank: made only of characters that show nothing.
"""

from __future__ import annotations

import hashlib
import unicodedata

from libs.schema.types import BODY_MAX_CHARS, TITLE_MAX_CHARS

# What shows nothing on its own, besides whitespace: controls (Cc), format
# characters (Cf: zero-width spaces and joiners, the BOM, bidi marks, tags)
# and separators (Z*); and the blanks Unicode lists as default-ignorable or
# that fonts draw empty, though their categories say letter or mark.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_INVISIBLE = frozenset(
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u180b\u180c\u180d\u180f"  # Mongolian variation selectors
    "\u2800"  # Braille pattern blank
)
_VARIATION_SELECTORS = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))


class InvalidBody(ValueError):
    """The body breaks a rule; the message says which, for the client."""


class InvalidTitle(ValueError):
    """The title breaks a rule; the message says which, for the client."""


def _invisible(char: str) -> bool:
    if char.isspace() or char in _INVISIBLE:
        return True
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _VARIATION_SELECTORS)


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: empty, or only whitespace and
    invisible characters (a body of zero-width spaces is blank)."""
    return all(_invisible(char) for char in text)


def _is_control(char: str) -> bool:
    return char <= "\x1f" or "\x7f" <= char <= "\x9f"


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
    if is_blank(body):
        raise InvalidBody(
            "body must not be blank (whitespace and invisible characters only)"
        )
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from \ud800-style escapes
        raise InvalidBody("body must be valid UTF-8 text") from exc


def check_title(title: str) -> None:
    """1 to 200 code points, no control character (C0, DEL, C1), not blank.
    The same rules as ``libs.schema.types.Title``, with messages for people."""
    length = len(title)
    if length > TITLE_MAX_CHARS:
        raise InvalidTitle(
            f"title is {length} characters; at most {TITLE_MAX_CHARS} are allowed"
        )
    if any(_is_control(char) for char in title):
        raise InvalidTitle(
            "title must not contain control characters (NUL, tab, newline, ...)"
        )
    if is_blank(title):
        raise InvalidTitle("title must not be blank; leave it out for none")


def normalise(body: str) -> str:
    """The form two bodies are compared in: NFC, whitespace runs as one space."""
    return " ".join(unicodedata.normalize("NFC", body).split())


def body_fingerprint(body: str) -> str:
    return hashlib.sha256(normalise(body).encode("utf-8")).hexdigest()
