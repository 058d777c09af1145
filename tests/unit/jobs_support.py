"""Stream jobs on a real SQLite bus, driven batch by batch, and what they published."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from gridwatch.bus import SqliteBus
from gridwatch.clock import SYSTEM_CLOCK, Clock, SystemClock
from gridwatch.components import Context, Job
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, Record, decode_lines

J = TypeVar("J", bound=Job)


class FixedClock(SystemClock):
    """A wall clock that stands still at ``at_s`` (intervals still pass)."""

    def __init__(self, at_s: float) -> None:
        self.at_s = at_s

    def time(self) -> float:
        return self.at_s


def started(
    job_class: type[J], job_id: str, config: Any, tmp_path: Path, clock: Clock = SYSTEM_CLOCK
) -> J:
    """A job with a fresh state, its outputs held back as in the running loop."""
    bus = SqliteBus(tmp_path / "bus.db")
    context = Context(tmp_path, Metrics(), bus, EnvelopeDecoder(), clock=clock)
    job = job_class(job_id, config, context)
    job.restore(None)
    return job


def published(job: Job) -> dict[str, list[Record]]:
    """What the job publishes at its next checkpoint, by topic (then forgotten)."""
    job.flush()
    out: dict[str, list[Record]] = {}
    for topic, _, lines in job.take_outputs():
        out.setdefault(topic, []).extend(decode_lines(list(lines)))
    return out
