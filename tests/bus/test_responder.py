"""A responder answers every request, even one whose answer it cannot send."""

from __future__ import annotations

import msgspec
import nats
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from libs.bus.responder import Responder
from tests.support import unique


async def test_an_answer_over_max_payload_becomes_an_error_reply(
    nc: nats.NATS,
) -> None:
    subject = f"test.responder.{unique()}"
    responder = Responder(nc, CollectorRegistry())

    async def too_big(msg: Msg) -> bytes:
        return b'{"page": "' + b"x" * nc.max_payload + b'"}'

    await responder.serve(subject, "test", "too_big", too_big)
    try:
        reply = await nc.request(subject, b"{}", timeout=2)
    finally:
        await responder.stop()

    error = msgspec.json.decode(reply.data)["error"]
    assert error["code"] == "internal"
    assert "too large" in error["message"]
