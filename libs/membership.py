"""Who belongs to a conversation, read from the CONVERSATIONS stream.

The stream is the source of truth and answers the moment a creation is acked,
so a message sent right after the 201 of its conversation is checked against
the real member list, with no wait for the read model. Membership never
changes after creation, so a found conversation is cached for good (bounded
by entry count). If member changes are ever added, this cache must be
invalidated by their events.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec
from nats.aio.client import Client

from libs.bus import direct
from libs.bus.subjects import CONVERSATIONS_STREAM, Subjects
from libs.schema.events import ConversationCreated, ConversationData

_decoder = msgspec.json.Decoder(ConversationCreated)


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
        data = _decoder.decode(found_msg.data).data
        self.remember(tenant, data)
        return data

    def remember(self, tenant: str, data: ConversationData) -> None:
        self._cache[(tenant, data.id)] = data
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
