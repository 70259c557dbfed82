"""``msgctl integrator add|remove|list`` and the connection ``msgctl tail`` uses.

Integrators of the development stack are NATS users kept beside its other
users in ``<root>/nats/`` (owner-only files); adding one reloads the running
server. Containers read a static configuration instead (``infra/nats/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import nats

from libs.bus.permissions import inbox_prefix
from libs.config import Settings
from libs.devstack.natsauth import CREDENTIALS, NatsAuth, dev_admin_env
from libs.devstack.supervisor import READY_FILE
from tools.msgctl import tail


def _note(text: str) -> None:
    print(f"msgctl: {text}", file=sys.stderr)


def _stack_nats_url(root: Path) -> str | None:
    try:
        return json.loads((root / READY_FILE).read_text())["nats"]
    except (FileNotFoundError, KeyError, ValueError):
        return None


def add(root: Path, tenant: str | None, name: str) -> int:
    if not tenant:
        _note("--tenant is required")
        return 2
    auth = NatsAuth.load_or_create(root)
    try:
        entry, created = auth.add_integrator(tenant, name)
    except ValueError as exc:
        _note(str(exc))
        return 2
    if auth.reload_server():
        _note("the running NATS server reloaded its users")
    else:
        _note("no stack is running; the user exists from the next `make run`")
    if not created:
        _note(f"{entry.user} already existed; its password is unchanged")
    url = _stack_nats_url(root)
    if url:
        print(f"export MSG_NATS_URL={url}")
    print(f"export MSG_NATS_USER={entry.user}")
    print(f"export MSG_NATS_PASSWORD={entry.password}")
    _note(
        f"{entry.user} reads msg.evt.{tenant}.> only; replies come under "
        f"{entry.inbox_prefix} (nats-py: inbox_prefix=...), and its consumers "
        f"must be named {entry.user}. Development credentials: keep them out "
        "of any repository."
    )
    return 0


def remove(root: Path, tenant: str | None, name: str) -> int:
    if not tenant:
        _note("--tenant is required")
        return 2
    auth = NatsAuth.load_or_create(root)
    if not auth.remove_integrator(tenant, name):
        _note("no such integrator")
        return 1
    auth.reload_server()
    return 0


def show(root: Path) -> int:
    for entry in NatsAuth.load_or_create(root).integrators:
        print(f"{entry.tenant}\t{entry.name}\t{entry.user}")
    return 0


def _credentials(root: Path, settings: Settings) -> tuple[str, str]:
    """The given NATS user, or the development stack's admin."""
    if settings.nats_user:
        return settings.nats_user, settings.nats_password
    admin = dev_admin_env(root)
    if not admin:
        return "", ""
    _note(f"no MSG_NATS_USER: reading as the development admin ({root / CREDENTIALS})")
    return admin["MSG_NATS_USER"], admin["MSG_NATS_PASSWORD"]


def run_tail(args: argparse.Namespace) -> int:
    settings = Settings.from_env("msgctl")
    url = (
        settings.nats_url
        if "MSG_NATS_URL" in os.environ
        else _stack_nats_url(args.root) or settings.nats_url
    )
    user, password = _credentials(args.root, settings)
    types = [t.strip() for t in args.types.split(",")] if args.types else None
    try:
        start = tail.parse_since(args.since)
        return asyncio.run(
            _tail(url, user, password, args.tenant, start, types, args.count)
        )
    except tail.TailError as exc:
        _note(str(exc))
        return 1
    except (nats.errors.Error, OSError) as exc:
        _note(f"cannot connect to NATS at {url} as {user or 'nobody'}: {exc!r}")
        return 1
    except KeyboardInterrupt:
        return 0


async def _tail(
    url: str,
    user: str,
    password: str,
    tenant: str,
    start: tail.Start,
    types: list[str] | None,
    count: int,
) -> int:
    options: dict[str, object] = {
        "servers": url.split(","),
        "name": "msgctl-tail",
        "allow_reconnect": False,
        "connect_timeout": 3,
    }
    if user:
        options |= {
            "user": user,
            "password": password,
            "inbox_prefix": inbox_prefix(user),
        }
    nc = await nats.connect(**options)
    try:
        return await tail.tail(
            nc,
            tenant=tenant,
            consumer=tail.consumer_name(user),
            start=start,
            types=types,
            count=count,
        )
    finally:
        await nc.close()
