"""infra/: the dashboard, the rules and the scrape config refer only to series
that exist, and every alert is documented and unit-tested."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest
import yaml

from libs.devstack.stack import SERVICES, Stack
from tests.observability.conftest import scrape

INFRA = Path(__file__).resolve().parents[2] / "infra"
PROMETHEUS = INFRA / "prometheus"
GRAFANA = INFRA / "grafana"
# Series of services being built on other branches; their names are agreed.
# Remove each once its service is in libs/devstack/stack.py SERVICES.
AGREED = {
    "messaging_presence_update_latency_seconds_bucket",
    "messaging_presence_update_latency_seconds_count",
    "messaging_presence_update_latency_seconds_sum",
    "messaging_abuse_rejections_total",
}
BUILT_IN = {"up", "ALERTS"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "offset", "bool", "inf", "nan",
}  # fmt: skip


def series_names(expr: str) -> set[str]:
    """The metric and recording-rule names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text
    )
    names = set()
    # A name never follows a digit or a dot: that is a number or a duration.
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(word)
    return names


def rule_groups() -> list[dict]:
    groups = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def recorded_names() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def alerts() -> list[dict]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((GRAFANA / "dashboards" / "messaging.json").read_text())
    queries = [
        (p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])
    ]
    queries += [(a["name"], a["expr"]) for a in board["annotations"]["list"]]
    return queries


@pytest.fixture(scope="module")
async def exposed(stack: Stack, http: aiohttp.ClientSession) -> set[str]:
    """Every sample name the running services expose (histograms and
    labelled series included even before their first observation)."""
    pages = await asyncio.gather(*(scrape(http, p.url) for p in stack.services))
    names = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    for families in pages:
        for family in families.values():
            for suffix in suffixes.get(family.type, [""]):
                names.add(family.name + suffix)
    return names


def test_the_dashboard_reads_only_series_that_exist(exposed: set[str]) -> None:
    known = exposed | recorded_names() | AGREED | BUILT_IN

    unknown = {
        (title, name)
        for title, expr in dashboard_queries()
        for name in series_names(expr)
        if name not in known
    }

    assert unknown == set()


def test_the_dashboard_shows_what_sres_run_the_system_by() -> None:
    read = set().union(*(series_names(e) for _, e in dashboard_queries()))

    assert {
        "slo:error_budget:remaining_ratio30d",
        "slo:api_latency_seconds:p95_rate5m",
        "slo:delivery_latency_seconds:p95_rate5m",
        "slo:presence_update_latency_seconds:p95_rate5m",
        "messaging_ws_connections",
        "messaging_ws_disconnects_total",
        "messaging_delivery_latency_seconds_bucket",
        "messaging_presence_update_latency_seconds_bucket",
        "messaging_consumer_pending",
        "messaging_consumer_dead_letters_total",
        "messaging_db_query_duration_seconds_bucket",
        "messaging_abuse_rejections_total",
    } <= read


def test_the_dashboard_is_well_formed_and_uses_the_provisioned_datasource() -> None:
    board = json.loads((GRAFANA / "dashboards" / "messaging.json").read_text())
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "messaging.yml").read_text()
    )["providers"][0]

    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        box = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert box["x"] + box["w"] <= 24, panel["title"]
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            uids = {t["datasource"]["uid"] for t in panel["targets"]}
            assert uids == {source["uid"]}, panel["title"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]


def test_the_rules_read_only_series_that_exist(exposed: set[str]) -> None:
    known = exposed | recorded_names() | AGREED | BUILT_IN

    unknown = {
        (rule.get("record") or rule.get("alert"), name)
        for group in rule_groups()
        for rule in group["rules"]
        for name in series_names(rule["expr"])
        if name not in known
    }

    assert unknown == set()


def test_every_alert_is_documented_and_unit_tested() -> None:
    runbook = (PROMETHEUS / "RUNBOOK.md").read_text()
    anchors = {
        "#" + line.removeprefix("## ").strip().lower()
        for line in runbook.splitlines()
        if line.startswith("## ")
    }
    cases: dict[str, set[bool]] = {}
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))

    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        link = alert["annotations"]["runbook_url"]
        assert link.startswith("infra/prometheus/RUNBOOK.md#"), name
        assert "#" + link.split("#", 1)[1] in anchors, name
        # Fires in one promtool test and stays quiet in another.
        assert cases.get(name) == {True, False}, name


def test_the_seed_alerts_and_burn_rates_are_all_there() -> None:
    names = {a["alert"] for a in alerts()}

    assert {
        "MessagingApiLatencyHigh",
        "MessagingApi5xxHigh",
        "MessagingSocketDisconnectSpike",
    } <= names
    for slo in ("ApiAvailability", "ApiError", "Delivery"):
        assert {
            f"Messaging{slo}BudgetBurnFast",
            f"Messaging{slo}BudgetBurnSlow",
        } <= names


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    assert set(SERVICES) | {"abuse-guard", "presence"} <= set(jobs)
    for name, job in jobs.items():
        [sd] = job["file_sd_configs"]
        assert sd["files"] == [f"../../.data/run/targets/{name}.json"]
    assert config["rule_files"] == ["rules/*.yml"]
