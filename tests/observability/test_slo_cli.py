"""``msgctl slo`` prints each SLO from the services' metrics or a Prometheus."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from libs.devstack import targets
from libs.devstack.servers import LOOPBACK, free_port
from libs.devstack.stack import Stack
from tests.support import Client, unique

REPO = Path(__file__).resolve().parents[2]


async def msgctl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.msgctl",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def table(output: str) -> dict[str, list[str]]:
    """The rows of the SLO table by SLO id: target, current, spent, status."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("SLO-"):
            cells = re.split(r"\s{2,}", line.strip())
            rows[cells[0]] = cells[1:]
    return rows


async def test_slo_from_the_services_metrics_counts_a_failed_send(
    stack: Stack, client: Client
) -> None:
    # A gateway of its own, so that its counts are this test's traffic only.
    replica = stack.make_service("gateway", 1)
    replica.start()
    ingest = stack.service("ingest")
    try:
        await asyncio.to_thread(replica.wait_ready)
        gateway = client.at(replica.url)
        tenant, alice, bob = unique(), unique("u"), unique("u")
        conv = await gateway.create_conversation(tenant, alice, [bob])
        bob_socket = await gateway.ws(tenant, bob)
        for i in range(9):
            assert (
                await gateway.send(tenant, alice, conv["id"], f"m{i}")
            ).status == 201
        for _ in range(10):
            listed = await gateway.list_messages(tenant, bob, conv["id"])
            assert listed.status == 200
        ingest.stop()
        try:
            down = await gateway.send(tenant, alice, conv["id"], "nobody takes it")
        finally:
            ingest.start()
            await asyncio.to_thread(ingest.wait_ready)
        await bob_socket.messages(9)
        await bob_socket.close()

        code, out, err = await msgctl("slo", "--url", replica.url)
    finally:
        replica.stop()

    assert down.status == 503
    assert code == 1, err
    rows = table(out)
    # 19 of 20 GET/POST /api/messaging answered: 95 %, 50x the 0.1 % budget.
    assert rows["SLO-MSG-API-AVAIL"] == [">= 99.9%", "95% of 20", "5000.0%", "FAIL"]
    assert rows["SLO-MSG-API-ERROR"][0] == "<= 0.5%"
    assert rows["SLO-MSG-API-ERROR"][3] == "FAIL"
    for slo, target in (
        ("SLO-MSG-API-LATENCY-P95 GET", "p95 <= 600ms"),
        ("SLO-MSG-API-LATENCY-P95 POST", "p95 <= 400ms"),
        ("SLO-MSG-RT-DELIVERY", "p95 <= 2s"),
    ):
        assert rows[slo][0] == target
        assert rows[slo][1].endswith("within)"), rows[slo]
        assert rows[slo][3] in {"pass", "FAIL"}
    assert {"SLO-MSG-RT-PRESENCE", "SLO-MSG-SPAM-BLOCK", "SLO-MSG-DUP-SUPPRESS"} <= set(
        rows
    )


async def test_slo_without_a_stack_says_how_to_get_one(tmp_path: Path) -> None:
    code, out, err = await msgctl("--root", str(tmp_path), "slo")

    assert code == 2
    assert out == ""
    assert "make run" in err


# ------------------------------------------------------- with Prometheus


def _prometheus_config(folder: Path, stack: Stack) -> Path:
    """infra/prometheus as shipped, laid out in ``folder`` as in the repository
    (so its relative target paths resolve to the test stack's target files),
    with intervals of one second so that the test need not wait."""
    config_dir = folder / "infra" / "prometheus"
    shutil.copytree(REPO / "infra" / "prometheus" / "rules", config_dir / "rules")
    for path in (config_dir / "rules").glob("*.yml"):
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
        path.write_text(yaml.safe_dump(rules))
    config = yaml.safe_load(
        (REPO / "infra" / "prometheus" / "prometheus.yml").read_text()
    )
    config["global"].update(
        scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s"
    )
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    targets.write(folder / ".data", stack.services)
    return config_dir / "prometheus.yml"


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A Prometheus scraping the test stack with the shipped config and rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (make rules installs it)")
    port = free_port()
    config = _prometheus_config(tmp_path, stack)
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _query(http: aiohttp.ClientSession, base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        async with http.get(url) as resp:
            if resp.status == 503:
                return []  # still starting up
            answer = json.loads(await resp.read())
    except aiohttp.ClientConnectionError:
        return []  # not listening yet
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


async def _until(predicate, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "Prometheus never showed it"
        await asyncio.sleep(0.5)


async def test_slo_from_prometheus_with_the_shipped_config_and_rules(
    stack: Stack, client: Client, http: aiohttp.ClientSession, prometheus: str
) -> None:
    jobs = {p.service for p in stack.services}

    async def all_up() -> bool:
        up = await _query(http, prometheus, "up == 1")
        return {r["metric"]["job"] for r in up} == jobs

    tenant, alice, bob = unique(), unique("u"), unique("u")
    conv = await client.create_conversation(tenant, alice, [bob])
    bob_socket = await client.ws(tenant, bob)

    async def traffic(count: int) -> None:
        batch = unique("b")  # bodies differ between rounds: no duplicates
        for i in range(count):
            sent = await client.send(tenant, alice, conv["id"], f"{batch} {i}")
            assert sent.status == 201
            assert (await client.list_messages(tenant, bob, conv["id"])).status == 200
        await bob_socket.messages(count)

    # A counter's first increments are lost to rate() if Prometheus first
    # sees its series after them: make every series exist, let Prometheus
    # scrape them, and only then send what it is to measure.
    await traffic(1)

    async def scraped() -> bool:
        seen = await _query(
            http, prometheus, "messaging_delivery_latency_seconds_count"
        )
        return bool(seen) and await all_up()

    await _until(scraped)
    await traffic(5)
    await bob_socket.close()

    async def recorded() -> bool:
        ratios = await _query(http, prometheus, "slo:sli_error:ratio_rate5m >= 0")
        return {r["metric"]["slo"] for r in ratios} == {
            "SLO-MSG-API-AVAIL",
            "SLO-MSG-API-ERROR",
            "SLO-MSG-RT-DELIVERY",
        }

    await _until(recorded)
    code, out, err = await msgctl("slo", "--prometheus", prometheus, "--window", "5m")
    async with http.get(f"{prometheus}/api/v1/rules") as resp:
        groups = (await resp.json())["data"]["groups"]

    assert code in {0, 1}, err
    rows = table(out)
    assert rows["SLO-MSG-API-AVAIL"][0] == ">= 99.9%"
    assert rows["SLO-MSG-API-AVAIL"][1].startswith("100% of ")
    assert rows["SLO-MSG-API-AVAIL"][2:] == ["0.0%", "pass"]
    assert rows["SLO-MSG-RT-DELIVERY"][1].endswith("within)")
    errors = [r["lastError"] for g in groups for r in g["rules"] if r.get("lastError")]
    assert errors == []
    assert {g["name"] for g in groups} >= {"messaging-slo-sli", "messaging-slo-burn"}
