"""Send limits per tenant and per user, kept as data in Redis.

The abuse guard's script reads these hashes on every check, so a change
applies to the very next send, on every replica, without a restart:

    abuse:{<tenant>}:limits           the tenant's values
    abuse:{<tenant>}:limits:<user>    one user's values; they win over the tenant's

Fields: ``limit`` (sends), ``window`` (whole seconds) and
``duplicate_window`` (seconds; 0 turns duplicate suppression off). A field
that is absent falls back to the tenant's, then to the service defaults
(``MSG_RATE_LIMIT``, ``MSG_RATE_WINDOW``, ``MSG_DUPLICATE_SUPPRESSION_WINDOW``).
Every key of one tenant carries the ``{<tenant>}`` hash tag, so one script
may touch them all on a Redis Cluster too; the price is that one tenant's
keys all live on one shard.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta
from redis.asyncio import Redis

# Bounds keep one user's sliding log (one entry per accepted send in the
# window) small enough for Redis, and a window meaningful for a chat.
MAX_LIMIT = 100_000
MAX_WINDOW = 86_400


class LimitOverride(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The values set at one level; None means "inherit"."""

    limit: Annotated[int, Meta(ge=1, le=MAX_LIMIT)] | None = None
    window: Annotated[int, Meta(ge=1, le=MAX_WINDOW)] | None = None
    duplicate_window: Annotated[float, Meta(ge=0, le=MAX_WINDOW)] | None = None


class InvalidOverride(ValueError):
    """A value is out of range; the message names it."""


def key_prefix(tenant: str) -> str:
    return f"abuse:{{{tenant}}}"


def override_key(tenant: str, user: str | None = None) -> str:
    base = f"{key_prefix(tenant)}:limits"
    return base if user is None else f"{base}:{user}"


def checked(values: dict[str, object]) -> LimitOverride:
    try:
        return msgspec.convert(values, LimitOverride, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidOverride(str(exc)) from exc


async def set_override(
    redis: Redis, tenant: str, override: LimitOverride, user: str | None = None
) -> None:
    """Set the given fields; fields left as None keep their current value."""
    fields = msgspec.structs.asdict(override)
    mapping = {name: str(value) for name, value in fields.items() if value is not None}
    if mapping:
        await redis.hset(override_key(tenant, user), mapping=mapping)


async def get_override(
    redis: Redis, tenant: str, user: str | None = None
) -> LimitOverride:
    """What is set at one level (``redis`` must decode responses)."""
    raw = await redis.hgetall(override_key(tenant, user))
    return checked(
        {k: v for k, v in raw.items() if k in LimitOverride.__struct_fields__}
    )


async def clear_override(redis: Redis, tenant: str, user: str | None = None) -> None:
    await redis.delete(override_key(tenant, user))
