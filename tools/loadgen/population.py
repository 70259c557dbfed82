"""Who takes part in a load test: tenants, users with one socket each,
conversations of two to five members, and a few abusers."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from tools.loadgen.profile import LoadProfile
from tools.loadgen.target import MessagingTarget


@dataclass
class User:
    tenant: str
    user_id: str
    socket_id: int
    conversations: list[Conversation] = field(default_factory=list)


@dataclass
class Conversation:
    tenant: str
    members: list[str]
    recipients: frozenset[int]  # socket ids that must receive its messages
    id: str = ""


@dataclass
class Abuser:
    tenant: str
    user_id: str
    conversation: Conversation


@dataclass
class Population:
    users: list[User]
    conversations: list[Conversation]
    abusers: list[Abuser]

    @classmethod
    def plan(cls, profile: LoadProfile, rng: random.Random, run_id: str) -> Population:
        users: list[User] = []
        conversations: list[Conversation] = []
        abusers: list[Abuser] = []
        per_tenant, extra = divmod(profile.sockets, profile.tenants)
        for t in range(profile.tenants):
            tenant = f"lt{run_id}t{t:04d}"
            count = per_tenant + (1 if t < extra else 0)
            members = [
                User(tenant, f"u{k:05d}", socket_id=len(users) + k)
                for k in range(count)
            ]
            users.extend(members)
            if len(members) >= 2:
                conversations.extend(_groups(tenant, members, rng))
        for i in range(profile.abusers):
            owner = users[(i * len(users)) // max(profile.abusers, 1)]
            conv = Conversation(
                owner.tenant,
                [owner.user_id],
                recipients=frozenset({owner.socket_id}),
            )
            conversations.append(conv)
            owner.conversations.append(conv)
            abusers.append(Abuser(owner.tenant, f"abuser{i:03d}", conv))
        return cls(users, conversations, abusers)

    async def create(self, target: MessagingTarget, concurrency: int = 64) -> None:
        """Create every conversation through the API, as its first member."""
        slots = asyncio.Semaphore(concurrency)

        async def create_one(conv: Conversation) -> None:
            async with slots:
                conv.id = await target.create_conversation(
                    conv.tenant, conv.members[0], conv.members[1:] or conv.members
                )

        for abuser in self.abusers:
            abuser.conversation.members.append(abuser.user_id)
        await asyncio.gather(*(create_one(c) for c in self.conversations))


def _groups(tenant: str, members: list[User], rng: random.Random) -> list[Conversation]:
    """Every user in about two conversations of two to five members."""
    out = []
    for _ in range(2):
        shuffled = members[:]
        rng.shuffle(shuffled)
        while len(shuffled) >= 2:
            size = min(len(shuffled), rng.randint(2, 5))
            if len(shuffled) - size == 1:
                size += 1
            group, shuffled = shuffled[:size], shuffled[size:]
            conv = Conversation(
                tenant,
                [u.user_id for u in group],
                recipients=frozenset(u.socket_id for u in group),
            )
            for user in group:
                user.conversations.append(conv)
            out.append(conv)
    return out
