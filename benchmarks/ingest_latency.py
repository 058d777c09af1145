"""p99 latency of POST /ingest (1,000 records of 500 bytes) at half the sustained rate.

First measures the sustained rate of the Parquet pipeline (as ingest_archive_rate.py does),
then sends requests on a fixed schedule at half that rate (open loop: a slow answer does not
delay the next request) to a fresh `gridwatch run`, and reports latency percentiles. The
baseline in the same run is the latency of a single request on the idle pipeline.

    .venv/bin/python -m benchmarks.ingest_latency [--seconds 15] [--rate RECORDS_PER_S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

from benchmarks.ingest_archive_rate import sustained_rate
from benchmarks.ingest_common import RECORDS_PER_REQUEST, Pipeline, bodies, machine, post


async def timed(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    """One request's latency in seconds."""
    started = time.monotonic()
    await post(session, url, body)
    return time.monotonic() - started


async def latencies(
    rate: float, seconds: float, payloads: list[bytes]
) -> tuple[list[float], float]:
    """Latencies at ``rate`` records/s, and the idle latency measured first."""
    with Pipeline("parquet") as pipeline:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for body in payloads[:3]:
                await post(session, pipeline.url, body)  # warm up
            idle = statistics.median(
                [await timed(session, pipeline.url, payloads[i]) for i in range(10)]
            )
            interval = RECORDS_PER_REQUEST / rate
            tasks = []
            started = time.monotonic()
            i = 0
            while time.monotonic() - started < seconds:
                due = started + i * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                body = payloads[i % len(payloads)]
                tasks.append(asyncio.create_task(timed(session, pipeline.url, body)))
                i += 1
            return list(await asyncio.gather(*tasks)), idle


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, help="full sustained rate (default: measure it)")
    args = parser.parse_args()
    payloads = bodies(32)
    print(f"machine: {machine()}")
    full = args.rate or await sustained_rate("parquet", 10.0, 6, payloads)
    half = full / 2
    print(f"sustained rate: {full:,.0f} records/s; measuring at half: {half:,.0f} records/s")
    values, idle = await latencies(half, args.seconds, payloads)
    ms = [v * 1000 for v in values]
    print(f"{len(ms)} requests of {RECORDS_PER_REQUEST} records at {half:,.0f} records/s")
    print(
        f"latency ms: p50 {percentile(ms, 0.5):.1f}  p90 {percentile(ms, 0.9):.1f}  "
        f"p99 {percentile(ms, 0.99):.1f}  max {max(ms):.1f}"
    )
    print(
        f"baseline, one request on the idle pipeline: {idle * 1000:.1f} ms "
        f"(p99 / idle = {percentile(ms, 0.99) / (idle * 1000):.1f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
