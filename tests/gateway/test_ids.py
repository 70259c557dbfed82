"""Ids are NATS subject tokens: one ending in a newline (which a Python ``$``
lets through) is refused at every door, with a 4xx and nothing stored."""

from __future__ import annotations

import time

import jwt
import pytest

from libs import auth
from libs.bus.permissions import integrator_user
from libs.schema.types import is_id
from tests.support import Client, unique


@pytest.mark.parametrize("value", ["bob\n", "bob\r\n", "\nbob", "b\nob", "bob\n\n"])
def test_an_id_with_a_newline_is_not_an_id(value: str) -> None:
    assert not is_id(value)
    with pytest.raises(ValueError, match="must match"):
        auth.issue("s" * 40, tenant="acme", user_id=value)
    with pytest.raises(ValueError, match="tenant must match"):
        integrator_user(value, "crm")
    with pytest.raises(ValueError, match="integrator name"):
        integrator_user("acme", value.replace("bob", "crm"))


async def test_a_member_with_a_trailing_newline_is_a_400(client: Client) -> None:
    tenant = unique()

    reply = await client.request(
        "POST",
        "/api/messaging/conversations",
        token=client.token(tenant, "alice"),
        json_body={"members": ["bob\n", "carol"]},
    )

    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "invalid_request"
    assert reply.body["error"]["message"].startswith("Expected an id: 1 to 64")
    assert "members[0]" in reply.body["error"]["message"]
    mine = await client.request(
        "GET", "/api/messaging/conversations", token=client.token(tenant, "alice")
    )
    assert mine.body["conversations"] == []


async def test_a_conversation_id_with_a_trailing_newline_is_refused_everywhere(
    client: Client,
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    token = client.token(tenant, "alice")
    bad = conv["id"] + "\n"

    sent = await client.send(tenant, "alice", bad, "to a forged id")
    short = await client.send(tenant, "alice", "c\n", "to a forged id")
    listed = await client.list_messages(tenant, "alice", bad)
    fetched = await client.request(
        "GET", f"/api/messaging/conversations/{conv['id']}%0A", token=token
    )

    for reply in (sent, short, listed):
        assert reply.status == 400, reply
        assert reply.body["error"]["code"] == "invalid_request"
    assert fetched.status == 404, fetched
    assert fetched.body["error"]["code"] == "not_found"
    assert (await client.list_messages(tenant, "bob", conv["id"])).body[
        "messages"
    ] == []


async def test_a_presence_user_id_with_a_trailing_newline_is_a_400(
    client: Client,
) -> None:
    reply = await client.request(
        "GET",
        "/api/messaging/presence",
        token=client.token(unique(), "alice"),
        params={"user_ids": "alice\n"},
    )

    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("claim", ["tenant", "sub"])
async def test_a_token_whose_ids_end_in_a_newline_is_a_401(
    client: Client, claim: str
) -> None:
    claims = {"sub": "alice", "tenant": unique(), "exp": int(time.time()) + 600}
    claims[claim] += "\n"
    token = jwt.encode(claims, client.secret, algorithm="HS256")

    http = await client.request("GET", "/api/messaging/conversations", token=token)
    socket = await client.request("GET", "/api/messaging/ws", params={"token": token})

    for reply in (http, socket):
        assert reply.status == 401, reply
        assert reply.body["error"]["code"] == "unauthorized"
