"""What the gateway answers to a client's frames, as README.md's WebSocket
table documents it: ``pong {at}``, ``auth:ok {expires_at}``, and an
``error {code, message}`` frame, after which the socket stays open."""

from __future__ import annotations

import json
import time

import jwt

from tests.support import Client, unique


async def test_ping_refresh_and_refusals_answer_as_documented(
    client: Client,
) -> None:
    tenant = unique()
    ws = await client.ws(tenant, "bob")
    fresh = client.token(tenant, "bob", ttl=600)
    expired = client.token(tenant, "bob", ttl=-60)

    await ws.ws.send_str(json.dumps({"event": "ping"}))
    pong = await ws.next_event("pong")
    await ws.ws.send_str(json.dumps({"event": "typing", "data": {}}))
    unknown = await ws.next_event("error")
    await ws.ws.send_str("not json")
    garbled = await ws.next_event("error")
    await ws.ws.send_str(json.dumps({"event": "auth", "data": {"token": expired}}))
    refused = await ws.next_event("error")
    await ws.ws.send_str(json.dumps({"event": "auth", "data": {"token": fresh}}))
    accepted = await ws.next_event("auth:ok")
    await ws.ws.send_str(json.dumps({"event": "ping"}))
    still_open = await ws.next_event("pong")
    await ws.close()

    assert set(pong) == {"at"}
    assert abs(pong["at"] - time.time()) < 5
    assert set(unknown) == set(garbled) == set(refused) == {"code", "message"}
    assert unknown["code"] == garbled["code"] == "unknown_event"
    assert refused["code"] == "unauthorized"
    exp = jwt.decode(fresh, options={"verify_signature": False})["exp"]
    assert accepted == {"expires_at": exp}
    assert still_open["at"] >= pong["at"]
