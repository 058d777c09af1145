"""Bus append and consume rates for 500-byte records in batches of 1,000, durable commits.

Baseline in the same run: the same bytes appended to a plain file with one fsync per batch,
and read back, which is what the disk allows at all.

    .venv/bin/python -m benchmarks.bus_throughput [--batches 400]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks._machine import describe
from gridwatch.bus import SqliteBus

RECORD_BYTES = 500
BATCH = 1000


def make_batch(index: int) -> list[bytes]:
    pad = b"x" * (RECORD_BYTES - 60)
    return [
        b'{"producer":"bench","type":"t","_id":"%08d-%06d","data":"%s"}' % (index, i, pad)
        for i in range(BATCH)
    ]


def bench_bus(directory: Path, batches: list[list[bytes]]) -> tuple[float, float]:
    bus = SqliteBus(directory / "bus.db", durability="full")
    start = time.perf_counter()
    for batch in batches:
        bus.append([("bench_raw_t", "bench", batch)])
    append_s = time.perf_counter() - start
    start = time.perf_counter()
    offset, count = 0, 0
    while True:
        slices = bus.read("bench_raw_t", offset, 5000)
        if not slices:
            break
        # Split into lines, as the file baseline does (a consumer of the joined buffer
        # would not need to).
        count += sum(len(list(s.lines)) for s in slices)
        offset = slices[-1].end
        bus.commit("bench", {"bench_raw_t": offset})
    consume_s = time.perf_counter() - start
    assert count == len(batches) * BATCH
    return append_s, consume_s


def bench_file(directory: Path, batches: list[list[bytes]]) -> tuple[float, float]:
    path = directory / "plain.log"
    start = time.perf_counter()
    with open(path, "ab") as handle:
        for batch in batches:
            handle.write(b"\n".join(batch) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    append_s = time.perf_counter() - start
    start = time.perf_counter()
    with open(path, "rb") as handle:
        count = sum(len(chunk.split(b"\n")) for chunk in iter(lambda: handle.read(1 << 22), b""))
    consume_s = time.perf_counter() - start
    assert count >= len(batches) * BATCH
    return append_s, consume_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    batches = [make_batch(i) for i in range(args.batches)]
    records = args.batches * BATCH
    print(
        f"{records:,} records of {RECORD_BYTES} B in batches of {BATCH:,}, "
        f"synchronous=FULL, best of {args.rounds}"
    )
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            bus_append, bus_consume = bench_bus(Path(tmp), batches)
            file_append, file_consume = bench_file(Path(tmp), batches)
        for name, seconds in (
            ("bus append", bus_append),
            ("bus consume", bus_consume),
            ("file append", file_append),
            ("file read", file_consume),
        ):
            best[name] = min(best.get(name, float("inf")), seconds)
    for name, seconds in best.items():
        print(f"{name:12s} {records / seconds:12,.0f} records/s")
    print(f"bus append / plain fsync'd file append: {best['file append'] / best['bus append']:.2f}")
    print(f"bus consume / plain file read:          {best['file read'] / best['bus consume']:.2f}")


if __name__ == "__main__":
    main()
