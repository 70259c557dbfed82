"""The verdict of a load test: the SLO table, a JSON result, and a plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.loadgen.recorder import Recorder
from tools.loadgen.runner import LoadRun


@dataclass(frozen=True)
class Check:
    slo: str
    target: str
    measured: str
    passed: bool | None  # None: not measured in this run


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def summarise(run: LoadRun) -> dict[str, Any]:
    rec = run.recorder
    post, get = rec.status["post"], rec.status["get"]
    requests = sum(post.values()) + sum(get.values())
    errors_5xx = sum(n for s, n in [*post.items(), *get.items()] if s >= 500)
    counts = dict(rec.counts)
    return {
        "profile": run.profile.as_dict(),
        "facts": run.facts,
        "latency_ms": {k: Recorder.percentiles(h) for k, h in rec.histograms.items()},
        "status": {
            "post": {str(k): v for k, v in sorted(post.items())},
            "get": {str(k): v for k, v in sorted(get.items())},
        },
        "requests": requests,
        "errors_5xx": errors_5xx,
        "accepted": counts.get("accepted", 0),
        "deliveries_expected": sum(len(r) for r in rec.expected.values()),
        "lost": rec.lost(),
        "lost_sample": rec.lost_sample(),
        "repeated": rec.repeats,
        "counts": counts,
        "timeline": [
            {
                "second": second,
                "sends": s.sends,
                "deliveries": s.deliveries,
                "errors_5xx": s.errors_5xx,
                "post": Recorder.percentiles(s.post),
                "get": Recorder.percentiles(s.get),
                "delivery": Recorder.percentiles(s.delivery),
            }
            for second, s in sorted(rec.timeline.items())
        ],
    }


def checks(result: dict[str, Any]) -> list[Check]:
    lat, counts = result["latency_ms"], result["counts"]
    out = []

    def latency(slo: str, kind: str, limit_ms: float) -> None:
        stats = lat[kind]
        if not stats["count"]:
            out.append(Check(slo, f"p95 <= {limit_ms:g} ms", "not measured", None))
            return
        out.append(
            Check(
                slo,
                f"p95 <= {limit_ms:g} ms",
                f"p95 {stats['p95']:.1f} ms "
                f"(p50 {stats['p50']:.1f}, p99 {stats['p99']:.1f})",
                stats["p95"] <= limit_ms,
            )
        )

    errors = _ratio(result["errors_5xx"], result["requests"])
    ok = "not measured" if errors is None else f"{100 * (1 - errors):.3f}%"
    out.append(
        Check(
            "SLO-MSG-API-AVAIL",
            ">= 99.9%",
            ok,
            None if errors is None else errors <= 0.001,
        )
    )
    latency("SLO-MSG-API-LATENCY-P95 POST", "post", 400)
    latency("SLO-MSG-API-LATENCY-P95 GET", "get", 600)
    out.append(
        Check(
            "SLO-MSG-API-ERROR",
            "5xx <= 0.5%",
            "not measured" if errors is None else f"{100 * errors:.3f}%",
            None if errors is None else errors <= 0.005,
        )
    )
    latency("SLO-MSG-RT-DELIVERY", "delivery", 2000)
    latency("SLO-MSG-RT-PRESENCE", "presence", 5000)
    spam = _ratio(counts.get("abuse_429", 0), counts.get("abuse_over_limit", 0))
    out.append(
        Check(
            "SLO-MSG-SPAM-BLOCK",
            "100% of over-limit sends get 429",
            "not measured" if spam is None else f"{100 * spam:.2f}%",
            None if spam is None else spam >= 1.0,
        )
    )
    dup = _ratio(
        counts.get("duplicates_suppressed", 0), counts.get("duplicates_sent", 0)
    )
    out.append(
        Check(
            "SLO-MSG-DUP-SUPPRESS",
            ">= 99% of same-body resends get 409",
            "not measured" if dup is None else f"{100 * dup:.2f}%",
            None if dup is None else dup >= 0.99,
        )
    )
    out.append(
        Check(
            "messages lost",
            "0",
            f"{result['lost']} of {result['deliveries_expected']} deliveries",
            result["lost"] == 0,
        )
    )
    out.append(
        Check(
            "messages delivered twice",
            "0",
            str(result["repeated"]),
            result["repeated"] == 0,
        )
    )
    return out


def table(result: dict[str, Any]) -> str:
    rows = [("SLO", "target", "measured", "result")]
    for check in checks(result):
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[check.passed]
        rows.append((check.slo, check.target, check.measured, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    profile, facts = result["profile"], result["facts"]
    accepted = result["accepted"]
    lines.append("")
    lines.append(
        f"{profile['tenants']} tenants, {profile['sockets']} sockets, "
        f"{profile['rate']:g} sends/s offered for {profile['duration']:g}s; "
        f"{accepted} accepted ({accepted / profile['duration']:.1f}/s), "
        f"{result['deliveries_expected']} deliveries expected"
    )
    if "gateway_rss_per_socket_bytes" in facts:
        per_socket = facts["gateway_rss_per_socket_bytes"] / 1024
        lines.append(f"gateway memory per socket: {per_socket:.1f} KiB")
    if "settle_s" in facts:
        lines.append(
            f"set-up: {facts.get('connect_s', 0):g}s to connect the sockets, then "
            f"{facts['settle_s']:g}s for the presence updates they caused"
        )
    lag = result["latency_ms"]["lag"]
    lines.append(
        f"load generator schedule lag: p99 {lag['p99']:.1f} ms, max {lag['max']:.1f} ms"
    )
    return "\n".join(lines)


def passed(result: dict[str, Any]) -> bool:
    return all(c.passed is not False for c in checks(result))


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = result["timeline"]
    seconds = [t["second"] for t in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for kind, colour in (
        ("post", "tab:blue"),
        ("get", "tab:green"),
        ("delivery", "tab:red"),
    ):
        top.plot(
            seconds,
            [t[kind]["p95"] for t in timeline],
            label=f"{kind} p95",
            color=colour,
        )
        top.plot(
            seconds,
            [t[kind]["p50"] for t in timeline],
            label=f"{kind} p50",
            color=colour,
            linestyle=":",
        )
    top.set_ylabel("latency (ms)")
    top.set_yscale("log")
    top.legend(loc="upper left", ncol=3, fontsize="small")
    top.grid(True, which="both", alpha=0.3)
    bottom.plot(seconds, [t["sends"] for t in timeline], label="accepted sends/s")
    bottom.plot(seconds, [t["deliveries"] for t in timeline], label="deliveries/s")
    bottom.plot(seconds, [t["errors_5xx"] for t in timeline], label="5xx/s")
    bottom.set_xlabel("second of the run")
    bottom.set_ylabel("per second")
    bottom.legend(loc="upper left", fontsize="small")
    bottom.grid(True, alpha=0.3)
    profile = result["profile"]
    fig.suptitle(
        f"{profile['rate']:g} sends/s, {profile['sockets']} sockets, "
        f"{profile['tenants']} tenants"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
