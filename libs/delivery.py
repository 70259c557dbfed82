"""The wire format of per-user delivery subjects (fanout -> gateways).

The payload is the exact WebSocket text frame ``{"event", "data"}``, encoded
once by the publisher; gateways forward it without decoding. Headers carry
what gateways need without parsing: the message id (to drop repeats after a
redelivery), its stream sequence, and the accepted time (delivery latency).
"""

from __future__ import annotations

import zlib

import msgspec

from libs.schema.api import Message

HEADER_ID = "Msg-Id"
HEADER_SEQ = "Msg-Seq"
HEADER_TIME = "Msg-Time"  # milliseconds since the epoch

NEW_MESSAGE = "messages:new"
PRESENCE_UPDATE = "presence:update"


class Frame(msgspec.Struct):
    event: str
    data: object


_encode = msgspec.json.Encoder().encode


def encode_frame(event: str, data: object) -> bytes:
    return _encode(Frame(event=event, data=data))


def created_millis(message: Message) -> int:
    return int(message.created_at.timestamp() * 1000)


def message_headers(message: Message) -> dict[str, str]:
    return {
        HEADER_ID: message.id,
        HEADER_SEQ: str(message.seq),
        HEADER_TIME: str(created_millis(message)),
    }


def recipient_partition(tenant: str, user_id: str, partitions: int) -> int:
    """The fanout partition that delivers to this user (stable, uniform)."""
    return zlib.crc32(f"{tenant}\x1f{user_id}".encode()) % partitions
