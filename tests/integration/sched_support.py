"""Helpers for scheduler tests: an in-process scheduler over a real bus and real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridwatch.bus import SqliteBus
from gridwatch.components import Context
from gridwatch.config.schedule import ScheduleSettings
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder
from gridwatch.runtime.publish import Publisher
from gridwatch.scheduler.core import Scheduler
from gridwatch.scheduler.store import Run, RunStore

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def iso(moment: datetime) -> str:
    """A UTC instant as an ISO 8601 start with milliseconds."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def soon(seconds: float = 0.5) -> str:
    """An ISO start ``seconds`` from now."""
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def make_scheduler(data_dir: Path, schedule: dict[str, Any]) -> Scheduler:
    """A scheduler for ``schedule`` (the YAML section as a dict) with its own bus."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = ScheduleSettings.model_validate(schedule)
    context = Context(
        data_dir=data_dir,
        metrics=Metrics(),
        bus=SqliteBus(data_dir / "bus.db", "normal"),
        decoder=EnvelopeDecoder(),
    )
    publisher = Publisher(context.bus, context.metrics, context.decoder)
    return Scheduler(settings, context, None, publisher.publish_ndjson)


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """Run the scheduler for the duration of the block, then stop it and close the bus."""
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await until(lambda: scheduler.leading, 10.0)
        yield scheduler
    finally:
        stop.set()
        await task
        scheduler.context.bus.close()


async def until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> None:
    """Wait until ``predicate()`` holds, or fail."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(step_s)


def _store(scheduler: Scheduler) -> RunStore:
    return RunStore(scheduler.context.data_dir / "scheduler.db", "reader")


def runs_of(scheduler: Scheduler, task: str) -> list[Run]:
    """The task's runs, oldest first (also after the scheduler stopped)."""
    store = _store(scheduler)
    try:
        return list(reversed(store.runs(task, 1000)))
    finally:
        store.close()


def output_of(scheduler: Scheduler, run_id: int) -> str:
    """A run's captured output."""
    store = _store(scheduler)
    try:
        run = store.run(run_id)
        assert run is not None
        return run.output or ""
    finally:
        store.close()


def finished(scheduler: Scheduler, task: str) -> list[Run]:
    """The task's runs that have ended, oldest first."""
    return [r for r in runs_of(scheduler, task) if r.state != "running"]
