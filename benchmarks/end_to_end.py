"""End-to-end rate: generator → durable bus → jsonl sink, in one `gridwatch` runtime.

Baseline in the same run: the generator alone (making and encoding the same records), the
ceiling that the bus and the sink are measured against.

    .venv/bin/python -m benchmarks.end_to_end [--records 300000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks._machine import describe
from gridwatch.config.pipeline import parse_pipeline
from gridwatch.record import encode_lines
from gridwatch.runtime.runner import Runtime
from gridwatch.sources.generator.source import panda_record, xrootd_record


def generator_alone(records: int) -> float:
    start = time.perf_counter()
    now = round(time.time() * 1000)
    for first in range(0, records, 1000):
        batch = [
            (panda_record if n % 2 == 0 else xrootd_record)(n, 1, now)
            for n in range(first, first + 1000)
        ]
        encode_lines(batch)
    return time.perf_counter() - start


async def pipeline_run(directory: Path, records: int) -> float:
    pipeline = parse_pipeline(
        textwrap.dedent(f"""
        sources:
          grid: {{type: generator, rate_per_s: 0, batch_records: 1000, limit: {records}}}
        sinks:
          files:
            type: jsonl
            inputs: [grid]
            directory: {directory / "out"}
            max_batch_records: 5000
        bus: {{durability: full}}
        """),
        "bench.yaml",
        directory,
    )
    runtime = Runtime(pipeline, directory / "data", "127.0.0.1:0")
    start = time.perf_counter()
    task = asyncio.create_task(runtime.run())
    while runtime.metrics.value("files", "sent") < records:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    runtime.stop()
    await task
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    args = parser.parse_args()
    print(describe())
    baseline = generator_alone(args.records)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        elapsed = asyncio.run(pipeline_run(Path(tmp), args.records))
        size = sum(f.stat().st_size for f in (Path(tmp) / "out").glob("*.jsonl"))
    print(f"{args.records:,} PanDA/XRootD records, {size / args.records:.0f} B each on average")
    print(f"generator alone:             {args.records / baseline:10,.0f} records/s")
    print(f"generator -> bus -> jsonl:   {args.records / elapsed:10,.0f} records/s")
    print(f"pipeline / generator alone:  {baseline / elapsed:.2f}")


if __name__ == "__main__":
    main()
