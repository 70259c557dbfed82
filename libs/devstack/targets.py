"""Prometheus scrape targets for the processes of a running dev stack.

``infra/prometheus/prometheus.yml`` has one scrape job per service, each
reading ``<root>/run/targets/<service>.json`` (Prometheus ``file_sd``). The
supervisor behind ``make run`` writes those files once every service is
ready, so every replica of every service is scraped, whatever ``SCALE`` and
whatever ports the stack chose.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

TARGETS_DIR = "run/targets"


class ScrapedProcess(Protocol):
    service: str
    name: str

    @property
    def url(self) -> str: ...


def target_groups(procs: Iterable[ScrapedProcess]) -> dict[str, list[dict]]:
    """``file_sd`` target groups by service: one group per replica, labelled
    with the replica's name (``gateway-0``)."""
    groups: dict[str, list[dict]] = {}
    for proc in procs:
        address = proc.url.split("//", 1)[1]
        groups.setdefault(proc.service, []).append(
            {"targets": [address], "labels": {"replica": proc.name}}
        )
    return groups


def write(root: Path, procs: Iterable[ScrapedProcess]) -> Path:
    """Replace the target files under ``root``; returns their folder."""
    folder = root / TARGETS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    groups = target_groups(procs)
    for stale in folder.glob("*.json"):
        if stale.stem not in groups:
            stale.unlink()
    for service, entries in groups.items():
        # Written aside and renamed: Prometheus never reads half a file.
        part = folder / f".{service}.json.part"
        part.write_text(json.dumps(entries, indent=2))
        os.replace(part, folder / f"{service}.json")
    return folder


def remove(root: Path) -> None:
    for path in (root / TARGETS_DIR).glob("*.json"):
        path.unlink(missing_ok=True)
