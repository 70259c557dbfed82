"""Prometheus conventions shared by every service.

Each service builds its own ``CollectorRegistry`` at start-up and passes it to
whatever registers metrics; nothing registers at import time. Labels are kept
to small fixed sets: no user, message or conversation ids.
"""

from __future__ import annotations

import gc
import logging
import platform
import time
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

log = logging.getLogger("telemetry")

# Fine buckets below the SLO thresholds, and a bucket edge at each of them
# (0.4 s POST, 0.6 s GET, 2 s delivery, 5 s presence), so the SLO ratios are
# exact rather than interpolated.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.8,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)


class GcPauses:
    """Times CPython's garbage collections: a full collection of a heap
    holding thousands of sockets stops every coroutine of the process."""

    SLOW = 0.05  # seconds; longer pauses are also logged

    def __init__(self, registry: CollectorRegistry) -> None:
        self._started = 0.0
        self._pauses = Histogram(
            "messaging_gc_pause_seconds",
            "Time the process stood still in garbage collection, by generation.",
            ["generation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self._pauses.labels(str(info["generation"])).observe(pause)
        if pause > self.SLOW:
            log.warning(
                "gc.slow_pause",
                extra={
                    "generation": info["generation"],
                    "seconds": round(pause, 3),
                    "collected": info["collected"],
                    "tracked": len(gc.get_objects(info["generation"])),
                },
            )


def new_registry(service: str, instance: str) -> CollectorRegistry:
    """A registry with process metrics and ``messaging_build_info``."""
    # No ``<counter>_created`` gauge beside every counter and histogram: it
    # doubles the series Prometheus stores and no rule reads it. (A process-
    # wide switch of prometheus-client; every service wants it off.)
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    try:
        version = metadata.version("messaging-backend")
    except metadata.PackageNotFoundError:
        version = "unknown"
    info = Gauge(
        "messaging_build_info",
        "Build of the running service; always 1.",
        ["service", "version", "python"],
        registry=registry,
    )
    info.labels(service, version, platform.python_version()).set(1)
    GcPauses(registry)
    return registry
