"""Encoding and decoding bus payloads, with decoders built once per type."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from nats.aio.msg import Msg

from libs.bus.subjects import Subjects
from libs.schema import errors
from libs.schema.api import error

T = TypeVar("T")
encode = msgspec.json.Encoder().encode
_decoders: dict[Any, msgspec.json.Decoder] = {}


def decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    found = _decoders.get(kind)
    if found is None:
        found = _decoders[kind] = msgspec.json.Decoder(kind)
    return found


def error_reply(code: str, message: str, **extra: Any) -> bytes:
    """An answer any reply type decodes: every reply has an ``error`` field."""
    return encode({"error": error(code, message, **extra)})


def parse_request(msg: Msg, kind: type[T]) -> T | bytes:
    """The decoded request, or the encoded error to answer instead.

    The tenant in the payload must match the subject's, since the subject is
    what NATS permissions are checked against.
    """
    try:
        request = decoder(kind).decode(msg.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return error_reply(errors.INVALID_REQUEST, str(exc))
    if request.tenant != Subjects.tenant_of(msg.subject):
        return error_reply(errors.FORBIDDEN, "tenant does not match the subject")
    return request
