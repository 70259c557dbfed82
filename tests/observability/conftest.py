"""What the observability tests share: the spans every service wrote, and
each service's /metrics as parsed families."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.devstack.stack import Stack
from tests.support import TRACE_FILE


@dataclass(frozen=True)
class Span:
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def trace_id(self) -> str:
        return self.raw["context"]["trace_id"]

    @property
    def span_id(self) -> str:
        return self.raw["context"]["span_id"]

    @property
    def parent_id(self) -> str | None:
        return self.raw["parent_id"]

    @property
    def kind(self) -> str:
        return self.raw["kind"].removeprefix("SpanKind.")

    @property
    def service(self) -> str:
        return self.raw["resource"]["attributes"]["service.name"]

    @property
    def attributes(self) -> dict[str, Any]:
        return self.raw["attributes"]


class SpanLog:
    """The JSON-lines span file that every service of the test stack appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[Span]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as lines:
            return [Span(json.loads(line)) for line in lines]

    async def trace(
        self, trace_id: str, done: Any, timeout: float = 15.0
    ) -> list[Span]:
        """The spans of one trace, once ``done(spans)`` holds (services export
        in batches, a fraction of a second after a span ends)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            spans = [s for s in self.read() if s.trace_id == trace_id]
            if done(spans) or loop.time() > deadline:
                return spans
            await asyncio.sleep(0.2)

    async def find(self, predicate: Any, timeout: float = 15.0) -> Span:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [s for s in self.read() if predicate(s)]
            if found:
                return found[0]
            assert loop.time() < deadline, "no such span was exported"
            await asyncio.sleep(0.2)


@pytest.fixture(scope="session")
def span_log(stack: Stack) -> SpanLog:
    return SpanLog(stack.root / TRACE_FILE)


Families = dict[str, Any]


async def scrape(session: aiohttp.ClientSession, base_url: str) -> Families:
    """A service's /metrics, as prometheus-client's parsed families by name."""
    async with session.get(base_url.rstrip("/") + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_sum(families: Families, sample: str, **labels: str) -> float:
    """The sum of one sample name's values whose labels include ``labels``."""
    total = 0.0
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(
                s.labels.get(k) == v for k, v in labels.items()
            ):
                total += s.value
    return total
