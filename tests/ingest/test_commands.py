"""Ingest checks what it is sent itself, whoever sends it: a command that
breaks a rule gets ``invalid_request`` and nothing is published."""

from __future__ import annotations

import msgspec
import nats
import pytest

from libs.bus.subjects import Subjects
from libs.devstack.stack import Stack
from tests.support import Client, unique


async def _ask(nc: nats.NATS, subject: str, command: dict) -> dict:
    reply = await nc.request(subject, msgspec.json.encode(command), timeout=5)
    return msgspec.json.decode(reply.data)


@pytest.mark.parametrize("key", ["a\x00b", "a b", "k\n", "clé", "", "k" * 129])
async def test_a_send_with_a_bad_client_msg_id_is_refused(
    stack: Stack, client: Client, nc: nats.NATS, key: str
) -> None:
    tenant = unique()
    conv = await client.create_conversation(tenant, "alice", ["bob"])
    command = {
        "tenant": tenant,
        "sender_id": "alice",
        "conversation_id": conv["id"],
        "body": "hello",
        "client_msg_id": key,
    }

    reply = await _ask(nc, Subjects().send(tenant), command)

    assert reply["error"]["code"] == "invalid_request", reply
    listed = await client.list_messages(tenant, "bob", conv["id"])
    assert listed.body["messages"] == []


@pytest.mark.parametrize(
    "title", ["x\x00y", "two\nlines", "c1 \x9f", "", "   ", "\u200b", "x" * 201]
)
async def test_a_creation_with_a_bad_title_is_refused(
    stack: Stack, client: Client, nc: nats.NATS, title: str
) -> None:
    tenant = unique()
    command = {
        "tenant": tenant,
        "creator_id": "alice",
        "members": ["bob"],
        "title": title,
    }

    reply = await _ask(nc, Subjects().create_conversation(tenant), command)

    assert reply["error"]["code"] == "invalid_request", reply
    mine = await client.request(
        "GET", "/api/messaging/conversations", token=client.token(tenant, "alice")
    )
    assert mine.body["conversations"] == []
