"""Reading single messages straight from a stream (JetStream direct get).

Direct gets are answered by any server holding the stream without going
through the JetStream API leader, so they are cheap enough for hot paths.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.aio.msg import Msg


class DirectGetError(Exception):
    """The server answered a direct get with an error status."""


async def last_by_subject(
    nc: Client, stream: str, subject: str, *, timeout: float
) -> Msg | None:
    """The newest message on ``subject`` in ``stream``, or None if it has none.

    The answer's ``Nats-Sequence`` header carries the stream sequence.
    """
    reply = await nc.request(
        f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=timeout
    )
    status = (reply.headers or {}).get("Status")
    if status is None:
        return reply
    if status == "404":
        return None
    raise DirectGetError(f"direct get on {stream} answered {status}")


async def by_sequence(
    nc: Client, stream: str, seq: int, *, timeout: float
) -> Msg | None:
    reply = await nc.request(
        f"$JS.API.DIRECT.GET.{stream}", b'{"seq":%d}' % seq, timeout=timeout
    )
    status = (reply.headers or {}).get("Status")
    if status is None:
        return reply
    if status == "404":
        return None
    raise DirectGetError(f"direct get on {stream} answered {status}")
