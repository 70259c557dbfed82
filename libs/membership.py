"""Who belongs to a conversation, read from the CONVERSATIONS stream.

The stream is the source of truth and answers the moment a creation is acked,
so a message sent right after the 201 of its conversation is checked against
the real member list, with no wait for the read model. Membership never
changes after creation, so a found conversation is cached for good (bounded
by entry count). If member changes are ever added, this cache must be
invalidated by their events.

Creations are read as they were written, without today's input rules: a
stream keeps conversations for good, and one created before a rule was
tightened (a member id ending in a newline, say) must still be readable.
``deliverable`` tells the ids that can be served from those that cannot.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable

import msgspec
from nats.aio.client import Client

from libs.bus import direct
from libs.bus.subjects import CONVERSATIONS_STREAM, Subjects
from libs.schema.events import ConversationCreated, ConversationData
from libs.schema.types import is_id


class _WrittenData(msgspec.Struct, kw_only=True):
    """``ConversationData`` with the types it was written with, and none of
    the constraints added since."""

    id: str
    members: list[str]
    created_by: str
    created_at: dt.datetime
    title: str | None = None


class _WrittenCreation(
    msgspec.Struct, tag_field="type", tag="conversation.created", kw_only=True
):
    id: str
    tenant: str
    time: dt.datetime
    data: _WrittenData
    version: int = 1


_decoder = msgspec.json.Decoder(_WrittenCreation)


def decode_created(raw: bytes) -> ConversationCreated:
    """A ``conversation.created`` event as it was written (``DecodeError`` if
    it is not one). Constructing the structs checks no constraint."""
    written = _decoder.decode(raw)
    data = written.data
    return ConversationCreated(
        id=written.id,
        tenant=written.tenant,
        time=written.time,
        version=written.version,
        data=ConversationData(
            id=data.id,
            members=data.members,
            created_by=data.created_by,
            created_at=data.created_at,
            title=data.title,
        ),
    )


def deliverable(members: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(valid, invalid)``: the member ids that can name a user today, and
    those stored before the rules were tightened, which no token can carry
    and no subject can deliver to."""
    valid, invalid = [], []
    for member in members:
        (valid if is_id(member) else invalid).append(member)
    return valid, invalid


class MembershipDirectory:
    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        *,
        capacity: int = 100_000,
        timeout: float = 2.0,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._capacity = capacity
        self._timeout = timeout
        self._cache: OrderedDict[tuple[str, str], ConversationData] = OrderedDict()

    async def get(self, tenant: str, conversation_id: str) -> ConversationData | None:
        """The conversation as created, or None if this tenant has no such id."""
        key = (tenant, conversation_id)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        subject = self._subjects.conversation_created(tenant, conversation_id)
        found_msg = await direct.last_by_subject(
            self._nc, CONVERSATIONS_STREAM, subject, timeout=self._timeout
        )
        if found_msg is None:
            return None
        data = decode_created(found_msg.data).data
        self.remember(tenant, data)
        return data

    def remember(self, tenant: str, data: ConversationData) -> None:
        self._cache[(tenant, data.id)] = data
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
