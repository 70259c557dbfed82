"""Users of the embedded NATS server: one per service, an admin, integrators.

Passwords are random per stack and kept in its root (``.data/nats/`` for
``make run``, a temporary folder for tests), readable by the owner only. The
server's ``authorization`` block is generated from them and the permissions
in ``libs.bus.permissions``; adding an integrator rewrites it and asks the
running server to reload its configuration (SIGHUP).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from libs.bus import permissions
from libs.bus.catalogue import SERVICES
from libs.bus.permissions import ADMIN, User

log = logging.getLogger("devstack")

CREDENTIALS = "nats/credentials.json"
INTEGRATORS = "nats/integrators.json"
AUTH_CONF = "nats/auth.conf"
PID_FILE = "nats/nats.pid"


@dataclass(frozen=True, slots=True)
class Integrator:
    tenant: str
    name: str
    user: str
    password: str

    @property
    def inbox_prefix(self) -> str:
        return permissions.inbox_prefix(self.user)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def _password() -> str:
    return secrets.token_urlsafe(24)


class NatsAuth:
    def __init__(self, root: Path, prefix: str = "msg") -> None:
        self.root = root
        self.prefix = prefix
        self._passwords: dict[str, str] = {}
        self._integrators: list[Integrator] = []

    @classmethod
    def load_or_create(cls, root: Path, prefix: str = "msg") -> NatsAuth:
        """The stack's users, creating passwords for any that have none."""
        auth = cls(root, prefix)
        path = root / CREDENTIALS
        if path.exists():
            auth._passwords = json.loads(path.read_text())
        missing = [u for u in (*SERVICES, ADMIN) if u not in auth._passwords]
        for user in missing:
            auth._passwords[user] = _password()
        if missing:
            write_private(path, json.dumps(auth._passwords, indent=2))
        integrators = root / INTEGRATORS
        if integrators.exists():
            auth._integrators = [
                Integrator(**entry) for entry in json.loads(integrators.read_text())
            ]
        return auth

    # ------------------------------------------------------------- users

    def password(self, user: str) -> str:
        return self._passwords[user]

    def env(self, user: str) -> dict[str, str]:
        """The settings a process needs to connect as ``user``."""
        return {"MSG_NATS_USER": user, "MSG_NATS_PASSWORD": self._passwords[user]}

    def users(self) -> list[User]:
        out = [User(ADMIN, self._passwords[ADMIN], None)]
        for service in SERVICES:
            perms = permissions.service_permissions(service, self.prefix)
            out.append(User(service, self._passwords[service], perms))
        for entry in self._integrators:
            perms = permissions.integrator_permissions(
                entry.tenant, entry.user, self.prefix
            )
            out.append(User(entry.user, entry.password, perms))
        return out

    @property
    def integrators(self) -> list[Integrator]:
        return list(self._integrators)

    def add_integrator(self, tenant: str, name: str) -> tuple[Integrator, bool]:
        """The integrator, and whether it is new (an existing one is kept)."""
        user = permissions.integrator_user(tenant, name)
        for entry in self._integrators:
            if entry.user == user:
                return entry, False
        entry = Integrator(tenant=tenant, name=name, user=user, password=_password())
        self._integrators.append(entry)
        self._save_integrators()
        return entry, True

    def remove_integrator(self, tenant: str, name: str) -> bool:
        user = permissions.integrator_user(tenant, name)
        kept = [entry for entry in self._integrators if entry.user != user]
        removed = len(kept) != len(self._integrators)
        self._integrators = kept
        self._save_integrators()
        return removed

    def _save_integrators(self) -> None:
        entries = [asdict(entry) for entry in self._integrators]
        write_private(self.root / INTEGRATORS, json.dumps(entries, indent=2))

    # ------------------------------------------------------------ server

    def server_config(self) -> str:
        """What ``NatsServer.start`` appends to its configuration."""
        self.write_auth()
        return f'include "auth.conf"\npid_file: "{self.root / PID_FILE}"\n'

    def write_auth(self) -> Path:
        path = self.root / AUTH_CONF
        write_private(path, permissions.authorization(self.users()))
        return path

    def reload_server(self) -> bool:
        """Rewrite the users and make the running server load them; False if
        no server of this stack is running."""
        self.write_auth()
        try:
            pid = int((self.root / PID_FILE).read_text())
            os.kill(pid, signal.SIGHUP)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return False
        log.info("nats.reloaded", extra={"pid": pid})
        return True


def dev_admin_env(root: Path) -> dict[str, str]:
    """The admin's settings of the development stack in ``root``, if any."""
    path = root / CREDENTIALS
    if not path.exists():
        return {}
    return {
        "MSG_NATS_USER": ADMIN,
        "MSG_NATS_PASSWORD": json.loads(path.read_text())[ADMIN],
    }
