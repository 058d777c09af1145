"""Bus append and consume rates for 500-byte records in batches of 1,000, durable commits.

Baselines in the same run: the same bytes appended to a plain file with one fsync per batch,
and read back, which is what the disk allows at all; and the bus with its id window off, to
show what refusing duplicate ids costs (target: under 10 % of the append rate). Rounds
alternate the two so that a busy machine slows both alike.

    .venv/bin/python -m benchmarks.bus_throughput [--batches 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._machine import describe
from gridwatch.bus import Bus, IdEntry, open_bus
from gridwatch.config.pipeline import BusSettings
from gridwatch.record import hash128

RECORD_BYTES = 500
BATCH = 1000
TOPIC = "bench_raw_t"

Batch = tuple[list[bytes], list[str]]


def make_batch(index: int) -> Batch:
    """A batch of envelope lines of RECORD_BYTES and their ids (32 hex digits, as made)."""
    ids = [hash128(b"%d-%d" % (index, i)) for i in range(BATCH)]
    pad = b"x" * (RECORD_BYTES - 86)
    lines = [
        b'{"producer":"bench","type":"t","_id":"%s","data":"%s"}' % (record_id.encode(), pad)
        for record_id in ids
    ]
    return lines, ids


def open_bench_bus(directory: Path, ids: bool) -> Bus:
    """The bus as a pipeline file would open it, its id window on or off."""
    settings = BusSettings(durability="full", dedup_window_ids=10_000_000 if ids else 0)
    return open_bus(settings, directory)


def time_appends(bus: Bus, batches: list[Batch]) -> tuple[float, int]:
    """Seconds to append the batches with their ids, and the lines refused."""
    refused = 0
    start = time.perf_counter()
    for lines, ids in batches:
        refused += bus.append([IdEntry(TOPIC, "bench", lines, ids)]).duplicates
    return time.perf_counter() - start, refused


def time_consume(bus: Bus, expected: int) -> float:
    """Seconds to read the topic through, committing offsets as a sink does."""
    start = time.perf_counter()
    offset, count = 0, 0
    while True:
        slices = bus.read(TOPIC, offset, 5000)
        if not slices:
            break
        # Split into lines, as the file baseline does (a consumer of the joined buffer
        # would not need to).
        count += sum(len(list(s.lines)) for s in slices)
        offset = slices[-1].end
        bus.commit("bench", {TOPIC: offset})
    assert count == expected
    return time.perf_counter() - start


def bench_bus(directory: Path, batches: list[Batch], ids: bool) -> dict[str, float]:
    """Append, consume, and (ids on) resend everything: seconds of each."""
    bus = open_bench_bus(directory, ids)
    append_s, refused = time_appends(bus, batches)
    assert refused == 0
    seconds = {"append": append_s, "consume": time_consume(bus, len(batches) * BATCH)}
    if ids:
        seconds["resend"], refused = time_appends(bus, batches)
        assert refused == len(batches) * BATCH and bus.duplicates_refused() == refused
    bus.close()
    return seconds


def bench_file(directory: Path, batches: list[Batch]) -> dict[str, float]:
    """Append to a plain file with an fsync per batch, then read it: seconds of each."""
    path = directory / "plain.log"
    start = time.perf_counter()
    with open(path, "ab") as handle:
        for lines, _ in batches:
            handle.write(b"\n".join(lines) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    append_s = time.perf_counter() - start
    start = time.perf_counter()
    with open(path, "rb") as handle:
        count = sum(len(chunk.split(b"\n")) for chunk in iter(lambda: handle.read(1 << 22), b""))
    assert count >= len(batches) * BATCH
    return {"append": append_s, "read": time.perf_counter() - start}


def best_of(rounds: int, runs: dict[str, Callable[[Path], dict[str, float]]]) -> dict[str, float]:
    """The best seconds of every figure, running each in turn (order alternating) per round."""
    best: dict[str, float] = {}
    for round_ in range(rounds):
        order = list(runs.items())
        for name, run in order if round_ % 2 == 0 else reversed(order):
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                for figure, seconds in run(Path(tmp)).items():
                    key = f"{name} {figure}"
                    best[key] = min(best.get(key, float("inf")), seconds)
    return best


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
    best = best_of(
        args.rounds,
        {
            "bus, ids off": lambda tmp: bench_bus(tmp, batches, ids=False),
            "bus, ids on": lambda tmp: bench_bus(tmp, batches, ids=True),
            "file": lambda tmp: bench_file(tmp, batches),
        },
    )
    for name, seconds in best.items():
        print(f"{name:22s} {records / seconds:12,.0f} records/s")
    on, off = best["bus, ids on append"], best["bus, ids off append"]
    consume = best["bus, ids off consume"]
    print(f"bus append, ids on / ids off:           {off / on:.2f} (check: +{on / off - 1:.0%})")
    print(f"bus append / plain fsync'd file append: {best['file append'] / off:.2f}")
    print(f"bus consume / plain file read:          {best['file read'] / consume:.2f}")


if __name__ == "__main__":
    main()
