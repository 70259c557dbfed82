"""``msgctl slo``: each SLO's target, current value and error budget spent.

Without ``--prometheus`` it reads ``/metrics`` of every service of the
running dev stack (``<root>/run/ready.json``), or of the ``--url``s given,
and sums them: values since each process started. With ``--prometheus URL``
it asks that server for the increase of the same series over ``--window``.
"""

from __future__ import annotations

import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from libs.devstack.supervisor import READY_FILE
from libs.telemetry import slo

TIMEOUT = 5.0


class SourceError(Exception):
    """The metrics could not be read at all."""


@dataclass
class ScrapedMetrics:
    """Samples of several processes' ``/metrics``, summed on demand."""

    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    families: set[str] = field(default_factory=set)
    scraped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.samples.append((sample.name, sample.labels, sample.value))

    def _matching(self, name: str, matchers: slo.Matchers):
        patterns = {k: re.compile(v) for k, v in matchers.items()}
        for sample_name, labels, value in self.samples:
            if sample_name == name and all(
                p.fullmatch(labels.get(k, "")) for k, p in patterns.items()
            ):
                yield labels, value

    def total(self, metric: str, matchers: slo.Matchers) -> float | None:
        values = [value for _, value in self._matching(metric, matchers)]
        if values:
            return sum(values)
        # A labelled metric that no event has touched yet still shows its
        # family: it exists, at zero.
        family = re.sub(r"_(total|count)$", "", metric)
        return 0.0 if family in self.families else None

    def buckets(self, histogram: str, matchers: slo.Matchers):
        by_le: dict[float, float] = defaultdict(float)
        for labels, value in self._matching(f"{histogram}_bucket", matchers):
            by_le[float(labels["le"])] += value
        return sorted(by_le.items())


def scrape(urls: Iterable[str]) -> ScrapedMetrics:
    metrics = ScrapedMetrics()
    for url in urls:
        try:
            with urllib.request.urlopen(
                url.rstrip("/") + "/metrics", timeout=TIMEOUT
            ) as resp:
                metrics.add(resp.read().decode())
        except OSError as exc:
            print(f"msgctl slo: cannot read {url}/metrics: {exc}", file=sys.stderr)
            metrics.failed.append(url)
            continue
        metrics.scraped.append(url)
    if not metrics.scraped:
        raise SourceError("no service answered /metrics")
    return metrics


def stack_urls(root: Path) -> list[str]:
    """Every service replica of the dev stack that ``make run`` started."""
    try:
        ready = json.loads((root / READY_FILE).read_text())
    except FileNotFoundError:
        raise SourceError(
            f"no running stack ({root / READY_FILE} is missing): start one "
            "with `make run`, or pass --url or --prometheus"
        ) from None
    return list(ready["services"].values())


class PrometheusMetrics:
    """The same sums, as increases over ``window`` asked of a Prometheus."""

    def __init__(self, base_url: str, window: str) -> None:
        self._base = base_url.rstrip("/")
        self._window = window

    def _query(self, promql: str) -> list[dict]:
        url = f"{self._base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
                answer = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise SourceError(f"Prometheus at {self._base}: {exc}") from exc
        if answer.get("status") != "success":
            raise SourceError(f"Prometheus refused {promql!r}: {answer}")
        return answer["data"]["result"]

    def _selector(self, name: str, matchers: slo.Matchers) -> str:
        inner = ", ".join(
            f'{label}=~"{_promql_string(value)}"' for label, value in matchers.items()
        )
        return f"{name}{{{inner}}}[{self._window}]"

    def total(self, metric: str, matchers: slo.Matchers) -> float | None:
        result = self._query(f"sum(increase({self._selector(metric, matchers)}))")
        return float(result[0]["value"][1]) if result else None

    def buckets(self, histogram: str, matchers: slo.Matchers):
        selector = self._selector(f"{histogram}_bucket", matchers)
        result = self._query(f"sum by (le) (increase({selector}))")
        pairs = [(float(r["metric"]["le"]), float(r["value"][1])) for r in result]
        return sorted(p for p in pairs if not math.isnan(p[1]))


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# ---------------------------------------------------------------- output

COLUMNS = ("SLO", "target", "current", "budget spent", "status")


def render(results: Sequence[slo.Result], heading: str) -> str:
    rows = [COLUMNS]
    notes: list[str] = []
    for r in results:
        spent = "-" if r.budget_spent is None else f"{r.budget_spent * 100:.1f}%"
        status = r.status.value
        if r.note:
            if r.note not in notes:
                notes.append(r.note)
            status += f" [{notes.index(r.note) + 1}]"
        rows.append((r.slo, r.target, r.value, spent, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [heading, ""]
    for i, row in enumerate(rows):
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    lines.append("")
    lines.append(
        "budget spent: the share of the SLO's error budget that the bad events "
        "counted use up\n(100% = all of it). SLO-MSG-API-ERROR is defined per "
        "10-minute window: with\n--prometheus, --window 10m shows the latest one."
    )
    return "\n".join(lines)


def run(root: Path, urls: Sequence[str], prometheus: str | None, window: str) -> int:
    """Print the table; 1 if any SLO fails, 2 if no metrics could be read."""
    try:
        if prometheus:
            source: slo.Source = PrometheusMetrics(prometheus, window)
            heading = f"SLOs over the last {window}, from Prometheus at {prometheus}"
        else:
            scraped = scrape(urls or stack_urls(root))
            source = scraped
            heading = (
                f"SLOs since process start, from /metrics of "
                f"{len(scraped.scraped)} service process(es)"
            )
            if scraped.failed:
                heading += f" (unreadable: {', '.join(scraped.failed)})"
        results = slo.evaluate(source)
    except SourceError as exc:
        print(f"msgctl slo: {exc}", file=sys.stderr)
        return 2
    print(render(results, heading))
    return 1 if any(r.status is slo.Status.FAIL for r in results) else 0
