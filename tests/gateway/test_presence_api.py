"""``GET /api/messaging/presence``: answers within the caller's tenant, and
bad input gets a clear 4xx JSON error."""

from __future__ import annotations

import pytest

from tests.support import Client, unique

PATH = "/api/messaging/presence"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({}, "invalid_request"),
        ({"user_ids": ""}, "invalid_request"),
        ({"user_ids": "alice,,bob"}, "invalid_request"),
        ({"user_ids": "alice,"}, "invalid_request"),
        ({"user_ids": "a.b"}, "invalid_request"),
        ({"user_ids": "alice, bob"}, "invalid_request"),
        ({"user_ids": "*"}, "invalid_request"),
        ({"user_ids": "x" * 65}, "invalid_request"),
        ({"user_ids": ",".join(f"u{i}" for i in range(101))}, "invalid_request"),
    ],
)
async def test_bad_queries_get_a_400(client: Client, query: dict, code: str) -> None:
    reply = await client.request(
        "GET", PATH, token=client.token(unique(), "alice"), params=query
    )

    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == code
    assert reply.body["error"]["message"]


async def test_no_token_is_a_401(client: Client) -> None:
    reply = await client.request("GET", PATH, params={"user_ids": "alice"})

    assert reply.status == 401
    assert reply.body["error"]["code"] == "unauthorized"


async def test_each_user_once_in_the_order_asked(client: Client) -> None:
    tenant = unique()
    alice = await client.ws(tenant, "alice")
    bob = await client.ws(tenant, "bob")
    await alice.presence_of("bob")
    hundred = [f"u{i}" for i in range(99)] + ["bob"]

    reply = await client.request(
        "GET",
        PATH,
        token=client.token(tenant, "alice"),
        params={"user_ids": ",".join(["bob", *hundred, "u0"])},
    )

    assert reply.status == 200, reply
    users = reply.body["users"]
    assert [u["user_id"] for u in users] == ["bob", *hundred[:-1]]
    assert users[0]["status"] == "online"
    assert users[0]["last_seen"] is not None
    assert users[1] == {"user_id": "u0", "status": "offline", "last_seen": None}
    await bob.close()
    await alice.close()
