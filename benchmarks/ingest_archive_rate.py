"""Sustained rate of POST /ingest → durable bus → Parquet archive (records/s).

500-byte records in requests of 1,000, sent by this process (aiohttp client, a few concurrent
connections) to a real `gridwatch run` process. The rate counts records until the sink has
written all of them. The baseline, measured in the same run, is the same pipeline with the
`jsonl` sink (NDJSON files) instead of the Parquet archive.

    .venv/bin/python -m benchmarks.ingest_archive_rate [--seconds 15] [--concurrency 6]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from benchmarks.ingest_common import (
    ID_WINDOW_ON,
    RECORDS_PER_REQUEST,
    Pipeline,
    bodies,
    machine,
    post,
)


async def sustained_rate(
    sink: str, seconds: float, concurrency: int, payloads: list[bytes], id_window: int
) -> float:
    """Records per second from the first request until the sink has written the last record."""
    with Pipeline(sink, id_window) as pipeline:
        async with aiohttp.ClientSession() as session:
            await post(session, pipeline.url, payloads[0])  # warm up
            while pipeline.sink_written() < RECORDS_PER_REQUEST:
                await asyncio.sleep(0.05)
            before = pipeline.sink_written()
            sent = 0
            started = time.monotonic()
            deadline = started + seconds

            async def worker(k: int) -> None:
                nonlocal sent
                i = k
                while time.monotonic() < deadline:
                    await post(session, pipeline.url, payloads[i % len(payloads)])
                    sent += RECORDS_PER_REQUEST
                    i += concurrency

            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            while pipeline.sink_written() - before < sent:
                await asyncio.sleep(0.02)
            return sent / (time.monotonic() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument(
        "--id-window",
        action="store_true",
        help="also measure the archive with the bus's id window off, then on again",
    )
    args = parser.parse_args()
    payloads = bodies(32)
    print(f"machine: {machine()}")
    print(
        f"requests of {RECORDS_PER_REQUEST} records of ~500 bytes, "
        f"{args.concurrency} connections, {args.seconds:g} s each run"
    )
    run = (args.seconds, args.concurrency, payloads)
    parquet = await sustained_rate("parquet", *run, ID_WINDOW_ON)
    baseline = await sustained_rate("jsonl", *run, ID_WINDOW_ON)
    print(f"POST /ingest -> bus -> Parquet archive: {parquet:,.0f} records/s")
    print(f"baseline, same pipeline with the jsonl sink: {baseline:,.0f} records/s")
    print(f"ratio parquet / jsonl: {parquet / baseline:.2f}")
    if args.id_window:
        without = await sustained_rate("parquet", *run, 0)
        again = await sustained_rate("parquet", *run, ID_WINDOW_ON)
        print(f"Parquet archive, bus id window off: {without:,.0f} records/s")
        print(f"Parquet archive, id window on again: {again:,.0f} records/s")
        print(f"cost of the id window: {1 - (parquet + again) / 2 / without:.1%}")


if __name__ == "__main__":
    asyncio.run(main())
