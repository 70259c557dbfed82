"""Bad input gets a clear 4xx JSON error and writes nothing."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest

from tests.support import Client, unique

EMOJI_4000 = "😀" * 3999 + "!"  # 4,000 code points, 15,997 UTF-8 bytes


def _send_cases(conv: str) -> list[tuple[str, bytes | str, int, str]]:
    """(name, raw request body, status, error code)."""

    def body(value: object, **extra: object) -> str:
        return json.dumps({"conversation_id": conv, "body": value, **extra})

    return [
        ("not json", b"{this is not json", 400, "invalid_json"),
        ("empty request", b"", 400, "invalid_json"),
        ("json array", b"[]", 400, "invalid_request"),
        ("invalid utf-8", b'{"conversation_id": "x", "body": "\xff\xfe"}', 400, "invalid_json"),
        ("lone surrogate", body("\ud800").encode("utf-8", "surrogatepass"), 400, "invalid_json"),
        ("missing body", json.dumps({"conversation_id": conv}), 400, "invalid_request"),
        ("missing conversation", json.dumps({"body": "hi"}), 400, "invalid_request"),
        ("body is a number", body(42), 400, "invalid_request"),
        ("body is null", body(None), 400, "invalid_request"),
        ("conversation is a list", json.dumps({"conversation_id": [conv], "body": "x"}), 400,
         "invalid_request"),
        ("client_msg_id is a number", body("hi", client_msg_id=7), 400, "invalid_request"),
        ("client_msg_id with a NUL", body("k", client_msg_id="a\x00b"), 400, "invalid_request"),
        ("client_msg_id with a space", body("k", client_msg_id="a b"), 400, "invalid_request"),
        ("client_msg_id ending in a newline", body("k", client_msg_id="k\n"), 400, "invalid_request"),
        ("client_msg_id not ASCII", body("k", client_msg_id="clé"), 400, "invalid_request"),
        ("client_msg_id with DEL", body("k", client_msg_id="k\x7f"), 400, "invalid_request"),
        ("client_msg_id empty", body("k", client_msg_id=""), 400, "invalid_request"),
        ("client_msg_id of 129", body("k", client_msg_id="k" * 129), 400, "invalid_request"),
        ("unknown field", body("hi", conversationId=conv), 400, "invalid_request"),
        ("0 code points", body(""), 400, "invalid_body"),
        ("blank once trimmed", body(" \t\n\u3000 "), 400, "invalid_body"),
        ("only zero-width spaces", body("\u200b\u200b\u200b"), 400, "invalid_body"),
        ("only format characters", body("\ufeff\u2060 \u200d"), 400, "invalid_body"),
        ("4,001 code points", body("x" * 4001), 400, "invalid_body"),
        ("4,001 emoji", body("😀" * 4001), 400, "invalid_body"),
        ("NUL byte", body("hello\x00world"), 400, "invalid_body"),
        ("conversation id with a dot", json.dumps({"conversation_id": "a.b", "body": "x"}),
         400, "invalid_request"),
        ("huge request", body("x" * 200_000), 413, "too_large"),
        ("unknown conversation", json.dumps({"conversation_id": "nope", "body": "x"}), 404,
         "not_found"),
    ]  # fmt: skip


async def test_every_bad_send_gets_its_4xx_and_nothing_is_stored(
    client: Client,
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    token = client.token(tenant, "alice")

    for name, raw, status, code in _send_cases(conv["id"]):
        reply = await client.request(
            "POST",
            "/api/messaging",
            token=token,
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == status, (name, reply)
        assert reply.body["error"]["code"] == code, (name, reply)
        assert reply.body["error"]["message"], name
        assert "regex" not in reply.body["error"]["message"], (name, reply)

    listed = await client.list_messages(tenant, "alice", conv["id"])
    assert listed.body["messages"] == []


async def test_exactly_4000_code_points_with_emoji_is_stored_exactly(
    client: Client,
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    untrimmed = "  Café\u0301 ✓  "  # decomposed accent and spaces kept as sent

    long_one = await client.send(tenant, "alice", conv["id"], EMOJI_4000)
    odd_one = await client.send(tenant, "alice", conv["id"], untrimmed)

    assert long_one.status == 201, long_one
    assert odd_one.status == 201, odd_one
    listed = await client.list_messages(tenant, "bob", conv["id"])
    bodies = [m["body"] for m in listed.body["messages"]]
    assert bodies == [untrimmed, EMOJI_4000]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({}, "invalid_request"),
        ({"conversation_id": "x", "limit": "ten"}, "invalid_request"),
        ({"conversation_id": "x", "limit": "0"}, "invalid_request"),
        ({"conversation_id": "x", "limit": "1_0"}, "invalid_request"),
        ({"conversation_id": "x", "limit": "\u0663"}, "invalid_request"),  # Arabic 3
        ({"conversation_id": "x", "limit": " 7"}, "invalid_request"),
        ({"conversation_id": "has space"}, "invalid_request"),
    ],
)
async def test_bad_list_queries(client: Client, query: dict, code: str) -> None:
    reply = await client.request(
        "GET", "/api/messaging", token=client.token(unique(), "alice"), params=query
    )

    assert reply.status == 400
    assert reply.body["error"]["code"] == code


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"members": "bob"}, 400),
        ({"members": []}, 400),
        ({"members": ["bob", "no.dots"]}, 400),
        ({"members": ["bob"], "title": "x" * 201}, 400),
        ({"members": ["bob"], "title": "x\x00y"}, 400),
        ({"members": ["bob"], "title": "two\nlines"}, 400),
        ({"members": ["bob"], "title": "tab\there"}, 400),
        ({"members": ["bob"], "title": "c1 \x85 control"}, 400),
        ({"members": ["bob"], "title": "del \x7f"}, 400),
        ({"members": ["bob"], "title": "lunch\n"}, 400),
        ({"members": ["bob"], "title": ""}, 400),
        ({"members": ["bob"], "title": " \u3000 "}, 400),
        ({"members": ["bob"], "title": "\u200b\ufeff"}, 400),
        ({"members": [f"u{i}" for i in range(1001)]}, 400),
    ],
)
async def test_bad_conversation_creations(
    client: Client, payload: dict, status: int
) -> None:
    reply = await client.request(
        "POST",
        "/api/messaging/conversations",
        token=client.token(unique(), "alice"),
        json_body=payload,
    )

    assert reply.status == status, reply
    assert reply.body["error"]["code"] == "invalid_request"


async def test_titles_and_client_msg_ids_within_the_rules_are_kept_as_sent(
    client: Client,
) -> None:
    tenant = unique()
    title = " Café ✓ — 200 code points at most 😀 "
    key = "!~" + "0123456789abcdef" * 7 + "-_.:/=+?#"

    conv = await client.create_conversation(tenant, "alice", ["bob"], title=title)
    sent = await client.send(tenant, "alice", conv["id"], "keyed", client_msg_id=key)
    again = await client.send(tenant, "alice", conv["id"], "keyed", client_msg_id=key)

    assert conv["title"] == title
    assert sent.status == 201, sent
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.body["id"] == sent.body["id"]
    fetched = await client.request(
        "GET",
        f"/api/messaging/conversations/{conv['id']}",
        token=client.token(tenant, "bob"),
    )
    assert fetched.body["title"] == title


async def test_unknown_route_and_wrong_method_answer_json(client: Client) -> None:
    missing = await client.request("GET", "/api/messaging/nothing-here")
    wrong = await client.request("DELETE", "/api/messaging")

    assert missing.status == 404
    assert missing.body["error"]["code"] == "not_found"
    assert wrong.status == 405
    assert wrong.body["error"]["code"] == "method_not_allowed"


def _tokens(secret: str, tenant: str) -> dict[str, str | None]:
    now = int(time.time())
    good = {"sub": "alice", "tenant": tenant, "exp": now + 600}
    unsigned = jwt.encode(good, key=None, algorithm="none")
    return {
        "no token": None,
        "expired": jwt.encode({**good, "exp": now - 60}, secret, algorithm="HS256"),
        "alg none": unsigned,
        "alg none, signature kept": unsigned + "c2ln",
        "wrong secret": jwt.encode(good, "x" * 48, algorithm="HS256"),
        "HS512": jwt.encode(good, secret, algorithm="HS512"),
        "missing tenant": jwt.encode({"sub": "alice", "exp": now + 600}, secret),
        "missing sub": jwt.encode({"tenant": tenant, "exp": now + 600}, secret),
        "missing exp": jwt.encode({"sub": "alice", "tenant": tenant}, secret),
        "tenant with a dot": jwt.encode({**good, "tenant": "a.b"}, secret),
        "garbage": "not.a.jwt",
        "exp as a string": jwt.encode({**good, "exp": str(now + 600)}, secret),
        "nbf as a string": jwt.encode({**good, "nbf": str(now - 60)}, secret),
    }


async def test_every_auth_failure_is_401(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    calls = [
        ("POST", "/api/messaging", {"conversation_id": conv["id"], "body": "hi"}, None),
        ("GET", "/api/messaging", None, {"conversation_id": conv["id"]}),
        ("GET", "/api/messaging/conversations", None, None),
        ("POST", "/api/messaging/conversations", {"members": ["bob"]}, None),
        ("GET", f"/api/messaging/conversations/{conv['id']}", None, None),
        ("GET", "/api/messaging/ws", None, None),
    ]

    for name, token in _tokens(client.secret, tenant).items():
        for method, path, payload, params in calls:
            if name == "no token" and path.endswith("/ws"):
                continue  # a socket may authenticate with its first frame instead
            reply = await client.request(
                method, path, token=token, json_body=payload, params=params
            )
            assert reply.status == 401, (name, method, path, reply)
            assert reply.body["error"]["code"] == "unauthorized"

    assert (await client.list_messages(tenant, "alice", conv["id"])).body[
        "messages"
    ] == []


async def test_other_tenants_ids_are_404_and_non_members_403(client: Client) -> None:
    tenant, intruder_tenant = unique(), unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    path = f"/api/messaging/conversations/{conv['id']}"

    cross_send = await client.send(intruder_tenant, "alice", conv["id"], "hi")
    cross_list = await client.list_messages(intruder_tenant, "alice", conv["id"])
    cross_get = await client.request(
        "GET", path, token=client.token(intruder_tenant, "alice")
    )
    outsider_send = await client.send(tenant, "mallory", conv["id"], "hi")
    outsider_list = await client.list_messages(tenant, "mallory", conv["id"])
    outsider_get = await client.request(
        "GET", path, token=client.token(tenant, "mallory")
    )

    assert [cross_send.status, cross_list.status, cross_get.status] == [404, 404, 404]
    assert [outsider_send.status, outsider_list.status, outsider_get.status] == [
        403
    ] * 3
    assert (await client.list_messages(tenant, "bob", conv["id"])).body[
        "messages"
    ] == []


async def _raw_status(client: Client, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as bytes (no client library to clean it up) and read
    the status line and body of the answer."""
    host, port = client.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_a_token_that_is_not_text_is_401_not_500(client: Client) -> None:
    statuses = []
    for path in (b"/api/messaging/conversations", b"/api/messaging/ws"):
        status, body = await _raw_status(
            client,
            b"GET " + path + b" HTTP/1.1\r\nHost: gateway\r\n"
            b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n",
        )
        statuses.append((status, json.loads(body)["error"]["code"]))

    assert statuses == [(401, "unauthorized")] * 2


async def test_a_body_that_does_not_unzip_is_400(client: Client) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])

    reply = await client.request(
        "POST",
        "/api/messaging",
        token=client.token(tenant, "alice"),
        data=b"not gzip at all",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "invalid_request"
    listed = await client.list_messages(tenant, "alice", conv["id"])
    assert listed.body["messages"] == []
