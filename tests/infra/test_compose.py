"""docker-compose.yml and the Dockerfile agree with the code.

No Docker engine runs here, so these read the files: every service with the
right command, every setting without a safe default, ports, server URLs and
NATS credentials that line up. The containers' NATS configuration itself is
loaded by a real nats-server.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
import yaml

from libs.bus import serverconf
from libs.config import deployment_variables
from libs.devstack.servers import LOOPBACK, free_port, nats_binary, port_open
from libs.devstack.stack import SERVICES

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict[str, Any]:
    return _compose()["services"]


def _resolve(value: object, env: dict[str, str] | None = None) -> str:
    """``${VAR:-default}`` as compose substitutes it from ``env``."""

    def one(found: re.Match[str]) -> str:
        given = (env or {}).get(found.group(1))
        return given if given else (found.group(2) or "")

    return _VARIABLE.sub(one, str(value))


def _env(service: str, env: dict[str, str] | None = None) -> dict[str, str]:
    raw = _services()[service].get("environment", {})
    return {key: _resolve(value, env) for key, value in raw.items()}


def _published(
    service: str, env: dict[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port; an
    entry without an address would listen on every interface."""
    published = []
    for entry in _services()[service].get("ports", []):
        parts = _resolve(entry, env).split(":")
        published.append(tuple(parts) if len(parts) == 3 else ("*", *parts))
    return published


def _scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["project"]["scripts"]


def _nats_conf_passwords() -> dict[str, str]:
    """User -> the environment variable its password is read from."""
    text = (ROOT / "infra/nats/nats.conf").read_text()
    return dict(re.findall(r'user: "([^"]+)", password: \$(\w+)', text))


def test_every_service_runs_from_the_image_with_its_console_script() -> None:
    services = _services()
    scripts = _scripts()

    for service in SERVICES:
        spec = services[service]
        (command,) = spec["command"]
        assert command == f"msg-{service}"
        assert spec["build"] == "."
        module, _, function = scripts[command].partition(":")
        assert module == f"services.{service.replace('-', '_')}.__main__"
        assert callable(getattr(importlib.import_module(module), function))
    assert services["bootstrap"]["command"] == ["msgctl", "bootstrap"]
    assert "msgctl" in scripts


def test_each_process_gets_every_setting_without_a_safe_default() -> None:
    for process in (*SERVICES, "bootstrap"):
        env = _env(process)

        for variable in deployment_variables(process):
            assert env.get(variable), f"{process} needs {variable}"


def test_server_urls_point_at_the_compose_servers() -> None:
    services = _services()
    postgres = _env("postgres")

    for process in (*SERVICES, "bootstrap"):
        nats_url = urlsplit(_env(process)["MSG_NATS_URL"])
        assert (nats_url.hostname, nats_url.port) == (
            "nats",
            serverconf.CLIENT_PORT,
        )
    for process in ("store", "bootstrap"):
        db = urlsplit(_env(process)["MSG_DATABASE_URL"])
        assert (db.hostname, db.port) == ("postgres", 5432)
        assert db.username == postgres["POSTGRES_USER"]
        assert db.password == postgres["POSTGRES_PASSWORD"]
        assert db.path == f"/{postgres['POSTGRES_DB']}"
    for process in SERVICES:
        redis = urlsplit(_env(process)["MSG_REDIS_URL"])
        assert (redis.hostname, redis.port) == ("redis", 6379)
    assert services["nats"]["image"].startswith("nats:2.12")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_ports_and_health_checks_match_the_settings() -> None:
    services = _services()

    for service in SERVICES:
        env = _env(service)
        port = env["MSG_HTTP_PORT"] if service == "gateway" else env["MSG_OPS_PORT"]
        host = env["MSG_HTTP_HOST"] if service == "gateway" else env["MSG_OPS_HOST"]
        check = " ".join(services[service]["healthcheck"]["test"])
        assert host == "0.0.0.0"  # reachable by Prometheus and the port map
        assert f"http://127.0.0.1:{port}/readyz" in check
    gateway_port = _env("gateway")["MSG_HTTP_PORT"]
    assert _published("gateway") == [("127.0.0.1", "8080", gateway_port)]
    assert _published("gateway", {"MSG_GATEWAY_PUBLISH_HOST": "0.0.0.0"}) == [
        ("0.0.0.0", "8080", gateway_port)
    ]
    client = str(serverconf.CLIENT_PORT)
    assert _published("nats") == [("127.0.0.1", client, client)]


def test_only_loopback_is_published_by_default() -> None:
    """Nothing is reachable from another machine unless asked for, and the
    unauthenticated NATS monitor not even from this one."""
    published = {name: _published(name) for name in _services()}

    assert {name for name, ports in published.items() if ports} == {
        "gateway",
        "nats",
        "prometheus",
        "grafana",
    }
    for name, ports in published.items():
        for host, _, _ in ports:
            assert host == "127.0.0.1", name
    monitor = str(serverconf.MONITOR_PORT)
    assert all(inside != monitor for _, _, inside in published["nats"])


def test_nats_users_and_passwords_line_up_with_the_server_config() -> None:
    wanted = _nats_conf_passwords()
    server_env = _services()["nats"]["environment"]
    chosen = {variable: f"set-{variable.lower()}" for variable in wanted.values()}

    assert set(wanted.values()) == set(server_env)  # or nats-server refuses to start
    for process, user in [*((s, s) for s in SERVICES), ("bootstrap", "admin")]:
        env = _env(process)
        assert env["MSG_NATS_USER"] == user
        # The same variable, so setting it changes both sides together.
        assert env["MSG_NATS_PASSWORD"] == _resolve(server_env[wanted[user]])
        assert _env(process, chosen)["MSG_NATS_PASSWORD"] == chosen[wanted[user]]


def test_secrets_come_from_the_environment_with_development_defaults() -> None:
    text = (ROOT / "docker-compose.yml").read_text()

    for key, value in re.findall(r"^\s+(\w*(?:PASSWORD|SECRET)\w*): (.*)$", text, re.M):
        found = _VARIABLE.fullmatch(value.strip())
        assert found, f"{key} is not read from the environment"
        assert "dev-only" in (found.group(2) or ""), key
    database = _services()["store"]["environment"]["MSG_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:-dev-only" in database


def test_app_services_wait_for_the_bootstrap() -> None:
    services = _services()

    for service in SERVICES:
        assert services[service]["depends_on"]["bootstrap"] == {
            "condition": "service_completed_successfully"
        }
    assert set(services["bootstrap"]["depends_on"]) == {"nats", "postgres"}


def test_dockerfile_builds_one_non_root_image_without_embedded_servers() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.startswith("FROM")]
    (user,) = [line.split()[1] for line in lines if line.startswith("USER")]
    installs = [line for line in lines if "pip install" in line]
    cmd = next(line for line in reversed(lines) if line.startswith("CMD"))

    assert set(froms) == {"python:3.11-slim"}
    assert user not in {"root", "0"}
    assert installs
    assert all("embedded" not in line for line in installs)
    assert cmd.split('"')[1] in _scripts()


def _mounted(service: str, inside: str) -> Path:
    """The file of this checkout that ``service`` sees at ``inside``."""
    for volume in _services()[service]["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./") and (
            inside == target or inside.startswith(target + "/")
        ):
            return ROOT / source / inside.removeprefix(target).lstrip("/")
    raise AssertionError(f"{service} does not mount {inside}")


def _prometheus_config() -> tuple[Path, dict[str, Any]]:
    """The configuration the compose Prometheus is started with."""
    (flag,) = [
        arg
        for arg in _services()["prometheus"]["command"]
        if arg.startswith("--config.file=")
    ]
    path = _mounted("prometheus", flag.partition("=")[2])
    return path, yaml.safe_load(path.read_text())


def test_prometheus_scrapes_the_services_where_they_listen() -> None:
    """Every app service is a target, by its compose name, on the port it
    serves /metrics on (the gateway its HTTP port, the others their ops
    port), in the job the rules and the dashboard expect."""
    path, config = _prometheus_config()
    targets = {
        job["job_name"]: [
            t for group in job["static_configs"] for t in group["targets"]
        ]
        for job in config["scrape_configs"]
    }

    for service in SERVICES:
        env = _env(service)
        port = env["MSG_HTTP_PORT"] if service == "gateway" else env["MSG_OPS_PORT"]
        assert targets.get(service) == [f"{service}:{port}"], service
    dev = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    assert set(targets) == {job["job_name"] for job in dev["scrape_configs"]}
    assert config["rule_files"] == dev["rule_files"]
    assert config["global"] == dev["global"]
    for pattern in config["rule_files"]:
        assert list(path.parent.glob(pattern)), pattern


def test_grafana_provisions_the_datasource_and_the_dashboards() -> None:
    grafana = _services()["grafana"]
    env = _env("grafana")
    provisioning = _mounted("grafana", "/etc/grafana/provisioning")
    datasource = (provisioning / "datasources/prometheus.yml").read_text()
    provider = (provisioning / "dashboards/messaging.yml").read_text()

    # The provisioning files read these variables; compose sets them.
    assert "${PROMETHEUS_URL}" in datasource
    assert "${MESSAGING_DASHBOARDS_DIR}" in provider
    url = urlsplit(env["PROMETHEUS_URL"])
    assert url.hostname == "prometheus"
    assert "prometheus" in grafana["depends_on"]
    assert url.port == int(_published("prometheus")[0][2])
    dashboards = _mounted("grafana", env["MESSAGING_DASHBOARDS_DIR"])
    assert dashboards == ROOT / "infra/grafana/dashboards"
    assert list(dashboards.glob("*.json"))


async def test_the_containers_nats_config_runs_with_the_compose_passwords(
    tmp_path: Path,
) -> None:
    """The generated infra/nats/nats.conf, on a real nats-server (moved to
    loopback and free ports), lets each compose service in as its user."""
    port, monitor = free_port(), free_port()
    config = (ROOT / "infra/nats/nats.conf").read_text()
    config = config.replace(
        f"0.0.0.0:{serverconf.CLIENT_PORT}", f"{LOOPBACK}:{port}"
    ).replace(f"0.0.0.0:{serverconf.MONITOR_PORT}", f"{LOOPBACK}:{monitor}")
    config = config.replace("/data/jetstream", str(tmp_path / "js"))
    (tmp_path / "nats.conf").write_text(config)
    env = {"PATH": "/usr/bin:/bin", **_env("nats")}
    server = await asyncio.create_subprocess_exec(
        str(nats_binary()),
        "-c",
        str(tmp_path / "nats.conf"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if port_open(port):
                break
            await asyncio.sleep(0.05)
        for process, user in [*((s, s) for s in SERVICES), ("bootstrap", "admin")]:
            nc = await nats.connect(
                f"nats://{LOOPBACK}:{port}",
                user=user,
                password=_env(process)["MSG_NATS_PASSWORD"],
                allow_reconnect=False,
            )
            await nc.close()
        with pytest.raises(nats.errors.Error):
            await nats.connect(
                f"nats://{LOOPBACK}:{port}",
                user="gateway",
                password="wrong",
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
