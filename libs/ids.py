"""Identifiers: time-ordered UUIDs for new things, derived ones for retries."""

from __future__ import annotations

import os
import time
import uuid

# Fixed namespace so the same (tenant, sender, client_msg_id) always yields the
# same message id, on every replica and after restarts.
_CLIENT_NAMESPACE = uuid.UUID("6f1c8e0e-5d1a-4b8e-9a57-3c1f0b7a2d44")


def uuid7() -> str:
    """A version-7 UUID: 48 bits of Unix milliseconds, then randomness."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0xFFF) << 64
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def message_id_for_retry(tenant: str, sender_id: str, client_msg_id: str) -> str:
    """The message id a send with ``client_msg_id`` gets, on every attempt."""
    return str(
        uuid.uuid5(_CLIENT_NAMESPACE, f"{tenant}\x1f{sender_id}\x1f{client_msg_id}")
    )
