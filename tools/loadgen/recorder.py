"""What a load test measured: latency histograms (HdrHistogram), counters,
a per-second timeline, and the books for lost and repeated deliveries."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

MAX_MICROS = 120_000_000  # two minutes


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, MAX_MICROS, 3)


@dataclass
class Second:
    """One second of the run, for the timeline and the plot."""

    sends: int = 0
    deliveries: int = 0
    errors_5xx: int = 0
    post: HdrHistogram = field(default_factory=_histogram)
    get: HdrHistogram = field(default_factory=_histogram)
    delivery: HdrHistogram = field(default_factory=_histogram)


class Recorder:
    KINDS = ("post", "get", "delivery", "presence", "lag")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.histograms = {kind: _histogram() for kind in self.KINDS}
        self.status: dict[str, dict[int, int]] = {
            "post": defaultdict(int),
            "get": defaultdict(int),
        }
        self.counts: dict[str, int] = defaultdict(int)
        self.timeline: dict[int, Second] = defaultdict(Second)
        # message id -> sockets that received it; accepted id -> recipients
        self.receipts: dict[str, set[int]] = defaultdict(set)
        self.expected: dict[str, frozenset[int]] = {}
        self.repeats = 0

    def start_measuring(self) -> None:
        """Forget latencies and counts so far (the warm-up); what was sent
        must still arrive, so the delivery books are kept."""
        self.started = time.monotonic()
        self.histograms = {kind: _histogram() for kind in self.KINDS}
        for statuses in self.status.values():
            statuses.clear()
        self.counts.clear()
        self.timeline.clear()

    def second(self) -> Second:
        return self.timeline[int(time.monotonic() - self.started)]

    def latency(self, kind: str, seconds: float) -> None:
        micros = max(1, min(int(seconds * 1_000_000), MAX_MICROS))
        self.histograms[kind].record_value(micros)
        if kind in ("post", "get", "delivery"):
            getattr(self.second(), kind).record_value(micros)

    def answered(self, kind: str, status: int, seconds: float) -> None:
        self.status[kind][status] += 1
        self.latency(kind, seconds)
        if status >= 500:
            self.second().errors_5xx += 1

    def accepted(self, message_id: str, recipients: frozenset[int]) -> None:
        self.expected[message_id] = recipients
        self.counts["accepted"] += 1
        self.second().sends += 1

    def received(self, socket_id: int, message_id: str, seconds: float | None) -> None:
        """``seconds`` is None for a replayed message (no delivery latency)."""
        seen = self.receipts[message_id]
        if socket_id in seen:
            self.repeats += 1
            return
        seen.add(socket_id)
        self.second().deliveries += 1
        if seconds is None:
            self.counts["replayed"] += 1
        else:
            self.latency("delivery", seconds)

    def lost_sample(self, limit: int = 20) -> list[tuple[str, int]]:
        """Some (message id, socket id) pairs that never arrived, to look into."""
        out: list[tuple[str, int]] = []
        for message_id, recipients in self.expected.items():
            for socket_id in recipients - self.receipts.get(message_id, set()):
                out.append((message_id, socket_id))
                if len(out) >= limit:
                    return out
        return out

    def lost(self) -> int:
        return sum(
            len(recipients - self.receipts.get(message_id, set()))
            for message_id, recipients in self.expected.items()
        )

    @staticmethod
    def percentiles(h: HdrHistogram) -> dict[str, float | int]:
        if h.get_total_count() == 0:
            return {"count": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        return {
            "count": h.get_total_count(),
            "p50": h.get_value_at_percentile(50) / 1000,
            "p95": h.get_value_at_percentile(95) / 1000,
            "p99": h.get_value_at_percentile(99) / 1000,
            "max": h.get_max_value() / 1000,
        }
