"""How late batch runs start relative to their scheduled time (target: p99 under 1 s).

Lateness is measured where it matters: the moment the task's own process starts (``date`` in
the child), minus the slot's time. Baseline in the same run: a bare asyncio loop that sleeps
until the same slot times and spawns the same command, with no ledger, claim or record.

    .venv/bin/python -m benchmarks.scheduler_lateness [--slots 60] [--period 0.2] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import describe
from gridwatch.bus import SqliteBus
from gridwatch.components import Context
from gridwatch.config.schedule import ScheduleSettings
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder
from gridwatch.runtime.publish import Publisher
from gridwatch.scheduler.core import Scheduler


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99, ordered[-1]


def exec_times(path: Path) -> list[tuple[int, float]]:
    """(slot ms, child start in ms) from the lines the children wrote."""
    out = []
    for line in path.read_text().splitlines():
        slot, started_ns = line.split()
        out.append((int(slot), int(started_ns) / 1e6))
    return out


async def scheduled(directory: Path, slots: int, period: float, pg_url: str | None) -> list[float]:
    log = directory / "starts.txt"
    start = datetime.now(UTC) + timedelta(seconds=1)
    iso_start = start.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    ha = (
        {"postgres_url": pg_url, "table_prefix": f"gw_bench_{uuid.uuid4().hex[:8]}"}
        if pg_url
        else {}
    )
    settings = ScheduleSettings.model_validate(
        {
            "ha": ha,
            "tasks": {
                "bench": {
                    "schedule": f"R{slots}/{iso_start}/PT{period}S",
                    "command": ["sh", "-c", f'echo "$GRIDWATCH_SLOT_MS $(date +%s%N)" >> {log}'],
                    "allow_overlap": True,
                }
            },
        }
    )
    context = Context(
        directory, Metrics(), SqliteBus(directory / "bus.db", "normal"), EnvelopeDecoder()
    )
    publisher = Publisher(context.bus, context.metrics, context.decoder)
    scheduler = Scheduler(settings, context, None, publisher.publish_ndjson)
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    deadline = time.monotonic() + 5 + slots * period + 5
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= slots:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await runner
    context.bus.close()
    if pg_url:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            for table in ("lease", "slots", "anchors"):
                conn.execute(f"DROP TABLE IF EXISTS {ha['table_prefix']}_{table}")  # type: ignore[arg-type]
    return [started - slot for slot, started in exec_times(log)]


async def baseline(directory: Path, slots: int, period: float) -> list[float]:
    log = directory / "baseline.txt"
    first = time.time() + 1
    waits: list[asyncio.Future[int]] = []
    for k in range(slots):
        due = first + k * period
        await asyncio.sleep(max(0.0, due - time.time()))
        slot_ms = round(due * 1000)
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", f'echo "{slot_ms} $(date +%s%N)" >> {log}'
        )
        waits.append(asyncio.ensure_future(proc.wait()))
    await asyncio.gather(*waits)
    return [started - slot for slot, started in exec_times(log)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=60)
    parser.add_argument("--period", type=float, default=0.2)
    parser.add_argument("--postgres", default=None, help="also measure with the PostgreSQL ledger")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(describe())
    print(f"{args.slots} slots every {args.period} s; lateness = child process start - slot time")
    with tempfile.TemporaryDirectory() as tmp:
        base = asyncio.run(baseline(Path(tmp), args.slots, args.period))
        runs = [("scheduler, SQLite ledger + file lock", Path(tmp) / "local", None)]
        if args.postgres:
            runs.append(("scheduler, PostgreSQL lease + fencing", Path(tmp) / "pg", args.postgres))
        print(f"{'':40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        p50, p99, worst = quantiles(base)
        print(f"{'baseline: bare asyncio sleep + spawn':40} {p50:8.1f} {p99:8.1f} {worst:8.1f}")
        for name, directory, url in runs:
            directory.mkdir()
            late = asyncio.run(scheduled(directory, args.slots, args.period, url))
            p50, p99, worst = quantiles(late)
            verdict = "meets" if p99 < 1000 else "MISSES"
            print(
                f"{name:40} {p50:8.1f} {p99:8.1f} {worst:8.1f}  ({len(late)} runs; "
                f"{verdict} the p99 < 1000 ms target)"
            )


if __name__ == "__main__":
    main()
