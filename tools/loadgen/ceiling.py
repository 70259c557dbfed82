"""The raw JetStream publish-and-ack rate from Python: the ceiling for POST.

Publishes 350-byte payloads to a scratch stream, first one at a time (the
latency of one durable publish) and then with many in flight (the rate
Python can drive), and deletes the stream afterwards.
"""

from __future__ import annotations

import asyncio
import time

import nats
from hdrh.histogram import HdrHistogram
from nats.js.api import StreamConfig

from libs.bus.permissions import inbox_prefix

STREAM = "BENCH_CEILING"
PAYLOAD = b"x" * 350


async def measure(
    nats_url: str,
    credentials: dict[str, str],
    count: int = 20_000,
    in_flight: int = 256,
) -> dict:
    """``credentials``: the stack's admin (``MSG_NATS_USER``/``PASSWORD``)."""
    nc = await nats.connect(
        nats_url,
        user=credentials.get("MSG_NATS_USER"),
        password=credentials.get("MSG_NATS_PASSWORD"),
        inbox_prefix=inbox_prefix(credentials.get("MSG_NATS_USER", "")),
    )
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name=STREAM, subjects=["bench.ceiling.>"]))
        one_by_one = HdrHistogram(1, 10_000_000, 3)
        started = time.perf_counter()
        for i in range(min(count // 10, 2000)):
            t = time.perf_counter()
            await js.publish(f"bench.ceiling.{i % 64}", PAYLOAD)
            one_by_one.record_value(max(1, int((time.perf_counter() - t) * 1e6)))
        sequential_rate = one_by_one.get_total_count() / (time.perf_counter() - started)

        slots = asyncio.Semaphore(in_flight)

        async def publish(i: int) -> None:
            async with slots:
                await js.publish(f"bench.ceiling.{i % 64}", PAYLOAD)

        started = time.perf_counter()
        await asyncio.gather(*(publish(i) for i in range(count)))
        pipelined_rate = count / (time.perf_counter() - started)
    finally:
        await js.delete_stream(STREAM)
        await nc.close()
    return {
        "sequential_per_s": round(sequential_rate),
        "sequential_p50_ms": one_by_one.get_value_at_percentile(50) / 1000,
        "sequential_p99_ms": one_by_one.get_value_at_percentile(99) / 1000,
        "pipelined_per_s": round(pipelined_rate),
        "in_flight": in_flight,
        "count": count,
    }
