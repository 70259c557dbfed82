"""msgctl and every msg-* service run with the base dependencies alone.

The container image installs the project without extras, and compose starts
nothing until ``msgctl bootstrap`` has run in it. Each check here runs in a
fresh interpreter in which every module of an installed distribution that is
not a base dependency (the [bench], [embedded] and [dev] extras and what
they pull in) fails to import, as it would in the image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import jwt
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from libs.devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "messaging-backend"

# Runs in the child: refuse the blocked modules, then call the target.
# Target "script:NAME" runs a console script's function with the remaining
# arguments; "import:A:B:..." imports each console script's module and
# prints, as JSON, those that failed.
_CHILD = textwrap.dedent(
    """
    import importlib, importlib.abc, json, sys

    blocked = frozenset(json.loads(sys.argv[1]))


    # Wraps each finder so that it finds nothing blocked, as if not installed.
    class NotInstalled(importlib.abc.MetaPathFinder):
        def __init__(self, inner):
            self.inner = inner

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                return None
            return self.inner.find_spec(name, path, target)

        def __getattr__(self, attribute):
            return getattr(self.inner, attribute)


    for loaded in [m for m in sys.modules if m.partition(".")[0] in blocked]:
        del sys.modules[loaded]
    sys.meta_path[:] = [NotInstalled(finder) for finder in sys.meta_path]
    kind, _, what = sys.argv[2].partition(":")
    if kind == "import":
        failed = {}
        for entry in what.split(";"):
            module, _, function = entry.partition(":")
            try:
                getattr(importlib.import_module(module), function)
            except Exception as exc:
                failed[entry] = repr(exc)
        print(json.dumps(failed))
    else:
        module, _, function = what.partition(":")
        sys.argv = [module, *sys.argv[3:]]
        sys.exit(getattr(importlib.import_module(module), function)())
    """
)


def _base_distributions() -> set[str]:
    """The project and every distribution its plain install brings."""
    found: set[str] = set()
    todo = [(PROJECT, frozenset[str]())]
    while todo:
        name, extras = todo.pop()
        found.add(canonicalize_name(name))
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(w) for w in wanted):
                continue
            if canonicalize_name(req.name) not in found or req.extras:
                todo.append((req.name, frozenset(req.extras)))
    return found


def _blocked_modules() -> set[str]:
    """Top-level modules that only distributions outside the base install
    provide (a namespace shared with a base distribution stays open)."""
    base = _base_distributions()
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if all(canonicalize_name(d) not in base for d in dists)
    }


def _scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["project"]["scripts"]


def _run(
    target: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # -E -s: no PYTHON* variables, no user site; the checkout on sys.path.
        [sys.executable, "-E", "-s", "-c", _CHILD, json.dumps(sorted(BLOCKED)),
         target, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )  # fmt: skip


def msgctl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return _run(f"script:{_scripts()['msgctl']}", *args, env=env, timeout=timeout)


BLOCKED = _blocked_modules()


def test_the_extras_are_blocked_and_the_base_is_not() -> None:
    assert {"hdrh", "matplotlib", "socketio", "engineio", "yaml"} <= BLOCKED
    assert {"aiohttp", "nats", "asyncpg", "redis", "msgspec", "jwt"}.isdisjoint(BLOCKED)

    result = _run("import:hdrh.histogram:HdrHistogram;aiohttp.web:Application")

    assert json.loads(result.stdout).keys() == {"hdrh.histogram:HdrHistogram"}


def test_every_console_script_imports_with_base_dependencies_only() -> None:
    scripts = _scripts()
    assert {"msgctl", "msg-gateway", "msg-store"} <= scripts.keys()

    result = _run("import:" + ";".join(scripts.values()))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["bootstrap", "--help"],
        ["loadtest", "--help"],
        ["bench", "--help"],
        ["listen", "--help"],
        ["limits", "--help"],
        ["tail", "--help"],
        ["slo", "--help"],
    ],
)
def test_msgctl_help(args: list[str]) -> None:
    result = msgctl(*args)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: msgctl")


def test_msgctl_token_and_contracts_check() -> None:
    secret = "s" * 40

    token = msgctl(
        "token", "--tenant", "acme", "--user", "bob", env={"MSG_JWT_SECRET": secret}
    )
    contracts = msgctl("contracts", "--check")

    assert token.returncode == 0, token.stderr
    claims = jwt.decode(token.stdout.strip(), secret, algorithms=["HS256"])
    assert (claims["tenant"], claims["sub"]) == ("acme", "bob")
    assert (contracts.returncode, contracts.stdout) == (0, ""), contracts.stderr


@pytest.mark.parametrize("command", ["loadtest", "bench"])
def test_load_commands_say_how_to_install_what_they_need(
    command: str, tmp_path: Path
) -> None:
    result = msgctl("--root", str(tmp_path), command, "--duration", "1")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "[bench]" in result.stderr
    assert "pip install 'messaging-backend[bench]'" in result.stderr


def test_bootstrap_runs_against_real_servers(infra: Stack) -> None:
    """What the compose one-shot does: create or update every stream,
    consumer and table (again: it is idempotent)."""
    env = {k: v for k, v in infra.admin_env().items() if k.startswith("MSG_")}

    result = msgctl("bootstrap", env=env, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
