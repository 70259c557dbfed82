"""``msgctl limits set|get|clear``: per-tenant and per-user send limits.

They are data in Redis (``libs.limits``), read by the abuse guard on every
check: a change applies to the next send, with no restart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import msgspec
import redis.exceptions
from redis.asyncio import Redis

from libs import limits
from libs.config import Settings
from libs.devstack.supervisor import READY_FILE
from libs.schema.types import TOKEN_PATTERN, is_id


def redis_url(root: Path, given: str | None) -> str:
    """--redis-url, else MSG_REDIS_URL, else the running dev stack's Redis."""
    if given:
        return given
    if os.environ.get("MSG_REDIS_URL"):
        return os.environ["MSG_REDIS_URL"]
    ready = root / READY_FILE
    if ready.exists():
        return json.loads(ready.read_text())["redis"]
    return Settings.from_env("msgctl").redis_url


async def run(args: argparse.Namespace) -> int:
    for name in ("tenant", "user"):
        value = getattr(args, name)
        if value is not None and not is_id(value):
            print(f"msgctl: --{name} must match {TOKEN_PATTERN}", file=sys.stderr)
            return 2
    url = redis_url(args.root, args.redis_url)
    client = Redis.from_url(url, decode_responses=True, socket_connect_timeout=3)
    try:
        if args.action == "set":
            override = limits.checked(
                {
                    "limit": args.limit,
                    "window": args.window,
                    "duplicate_window": args.duplicate_window,
                }
            )
            if override == limits.LimitOverride():
                print(
                    "msgctl: give --limit, --window or --duplicate-window",
                    file=sys.stderr,
                )
                return 2
            await limits.set_override(client, args.tenant, override, args.user)
        elif args.action == "clear":
            await limits.clear_override(client, args.tenant, args.user)
        found = await limits.get_override(client, args.tenant, args.user)
    except limits.InvalidOverride as exc:
        print(f"msgctl: {exc}", file=sys.stderr)
        return 2
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        print(f"msgctl: Redis at {url} is not answering: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    # Unset fields follow the tenant's values, then the services' defaults.
    print(msgspec.json.encode(found).decode())
    return 0
