"""Components: a config model plus an implementation, registered by name.

The pipeline file's ``type:`` picks the implementation. Four kinds exist: sources produce
batches of records, transforms are pure functions over batches, sinks write what the bus holds,
and jobs consume the bus and write their results back to it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridwatch.clock import SYSTEM_CLOCK, Clock
from gridwatch.record import (
    EnvelopeDecoder,
    Record,
    Rejection,
    decode_lines,
    encode_lines,
    split_topic,
)
from gridwatch.record.deadletter import DEADLETTER_ORIGIN, dead_letter
from gridwatch.record.deadletter import TOPIC as DEADLETTER_TOPIC

if TYPE_CHECKING:
    from gridwatch.bus.base import Bus
    from gridwatch.metrics import Metrics

Kind = Literal["source", "transform", "sink", "job"]
KINDS: tuple[Kind, ...] = ("source", "transform", "sink", "job")
SECTIONS: dict[Kind, str] = {
    "source": "sources",
    "transform": "transforms",
    "sink": "sinks",
    "job": "jobs",
}
DEADLETTER_INPUT = DEADLETTER_ORIGIN
"""The input name under which sinks receive dead-lettered records."""


class ComponentConfig(BaseModel):
    """Settings shared by every component. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field("", description="Which implementation runs this component.")


class SourceConfig(ComponentConfig):
    """Settings shared by every source."""


class ConsumerConfig(ComponentConfig):
    """Settings shared by everything that consumes the bus (sinks and jobs)."""

    inputs: list[str] = Field(
        min_length=1,
        description="Ids of the sources, transforms or jobs whose records this consumes "
        f"(`{DEADLETTER_INPUT}` for rejected records).",
    )
    max_batch_records: int = Field(
        5000, ge=1, description="At most this many records are handed over in one write."
    )
    poll_interval_s: float = Field(
        0.2, gt=0, description="Pause between reads of the bus when it had nothing new."
    )
    commit_interval_s: float = Field(
        1.0, ge=0, description="Commit consumed offsets at most this often (0: every batch)."
    )
    retry_initial_s: float = Field(0.5, gt=0, description="First pause after a failed write.")
    retry_max_s: float = Field(30.0, gt=0, description="Longest pause between write retries.")
    producers: list[str] = Field(
        default_factory=list,
        description="Take only records of these producers (shell patterns such as `panda*`; "
        "empty: every producer its inputs write).",
    )
    types: list[str] = Field(
        default_factory=list,
        description="Take only records of these types (shell patterns; empty: every type).",
    )

    def wants(self, topic: str) -> bool:
        """Whether records of ``topic`` are for this consumer (by ``producers`` / ``types``)."""
        if not self.producers and not self.types:
            return True
        parts = split_topic(topic)
        if parts is None:
            return False
        producer, _, type_ = parts
        return matches_any(producer, self.producers) and matches_any(type_, self.types)


def matches_any(name: str, patterns: list[str]) -> bool:
    """Whether ``name`` matches one of the shell patterns (no patterns: any name does)."""
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


class TransformConfig(ComponentConfig):
    """Settings shared by every transform."""

    inputs: list[str] = Field(
        min_length=1, description="Ids of the sources or transforms this takes records from."
    )


class SinkConfig(ConsumerConfig):
    """Settings shared by every sink."""


class JobConfig(ConsumerConfig):
    """Settings shared by every job."""


@dataclass
class Context:
    """What the runtime lends to components."""

    data_dir: Path
    metrics: Metrics
    bus: Bus
    decoder: EnvelopeDecoder
    host: str = field(default_factory=socket.gethostname)
    clock: Clock = SYSTEM_CLOCK
    """The time components read for their logic (tests pass another one)."""

    def state_dir(self, component_id: str) -> Path:
        """A private directory for a component's durable local state."""
        path = self.data_dir / "state" / component_id
        path.mkdir(parents=True, exist_ok=True)
        return path


class Component:
    """The common part of every component: its id, validated config and context."""

    kind: ClassVar[Kind]
    type_name: ClassVar[str]
    Config: ClassVar[type[ComponentConfig]]

    def __init__(self, component_id: str, config: Any, context: Context) -> None:
        self.id = component_id
        self.config = config
        self.context = context


@dataclass
class SourceBatch:
    """What a source yields: records, rejections, and the position after them.

    ``position`` (plain JSON) is stored atomically with the records; ``None`` keeps the last one.
    ``acked`` is resolved once the batch is durable on the bus (or failed with the reason).
    ``records`` is a list, or :class:`~gridwatch.record.EncodedRecords` when the source built
    the envelope lines itself (the runtime then appends those lines as they are).
    """

    records: Sequence[Record]
    rejected: list[Rejection] = field(default_factory=list)
    position: Any = None
    acked: asyncio.Future[None] | None = None


class Source(Component):
    """Produces batches of records; resumable from the position it last had acknowledged."""

    kind = "source"

    async def open(self, position: Any) -> None:
        """Prepare to produce, resuming after ``position`` (``None`` on the first run)."""

    def batches(self) -> AsyncIterator[SourceBatch]:
        """Yield batches for as long as the pipeline runs (or until the source is exhausted)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what ``open`` took."""


class Transform(Component):
    """A pure function over batches of records, between sources and the bus."""

    kind = "transform"

    def open(self) -> None:
        """Load state (e.g. from ``context.state_dir``) before the first batch."""

    def process(self, records: list[Record]) -> list[Record]:
        """Return the records to pass on (fewer, more, or changed)."""
        raise NotImplementedError

    def commit(self) -> None:
        """What the last :meth:`process` calls passed on is now durable on the bus."""

    def rollback(self) -> None:
        """What the last :meth:`process` calls passed on never reached the bus: forget it."""

    def close(self) -> None:
        """Persist state and release resources."""


class Batch:
    """Consecutive lines of one bus topic, decoded to records only if a sink asks."""

    def __init__(self, topic: str, lines: Sequence[bytes]) -> None:
        self.topic = topic
        self.lines = lines

    @cached_property
    def records(self) -> list[Record]:
        """The lines as records (decoded once, on first use)."""
        return decode_lines(self.lines)

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class WriteResult:
    """What a write did: ``rejected`` lists (index in batch, reason); the rest were written."""

    rejected: list[tuple[int, str]] = field(default_factory=list)


class Sink(Component):
    """Writes batches from the bus. Runs in worker threads; each sink has its own pace.

    Offsets are committed in two phases around :meth:`prepare_commit` (make everything written
    durable and return state to checkpoint with the offsets) and :meth:`finish_commit`.
    Exceptions from :meth:`write` are retried with backoff; per-record problems are returned
    as rejections and go to the dead-letter topic.
    """

    kind = "sink"

    def open(self, state: Any) -> None:
        """Prepare to write; ``state`` is what the last :meth:`prepare_commit` returned."""

    def write(self, batch: Batch) -> WriteResult:
        """Write one batch; raise to have it retried."""
        raise NotImplementedError

    def commit_due(self, seconds_since_commit: float) -> bool:
        """Whether the runtime should commit now."""
        interval: float = self.config.commit_interval_s
        return seconds_since_commit >= interval

    def prepare_commit(self) -> Any:
        """Make all writes so far durable; return JSON state to store with the offsets."""
        return None

    def finish_commit(self) -> None:
        """Called after the offsets and state are stored."""

    def close(self) -> None:
        """Release resources (uncommitted work is redone from the bus after a restart)."""


class Job(Component):
    """Consumes bus topics and publishes its results back to the bus (``enr`` / ``agg``).

    A job is pure per-batch logic; the runtime's consume loop feeds it and checkpoints it:
    outputs queued with :meth:`emit` are appended to the bus in the same transaction as the
    consumed offsets and :meth:`checkpoint`'s state, so a crash loses and duplicates nothing.
    """

    kind = "job"

    def __init__(self, component_id: str, config: Any, context: Context) -> None:
        super().__init__(component_id, config, context)
        self._outputs: dict[tuple[str, str], list[bytes]] = {}

    def restore(self, state: Any) -> None:
        """Load the checkpointed state (``None`` on the first run)."""

    def process(self, topic: str, lines: Sequence[bytes]) -> None:
        """Handle a batch of input lines; publish results with :meth:`emit`."""
        raise NotImplementedError

    def tick(self) -> None:
        """Called between polls (timers, refreshes); may publish with :meth:`emit`."""

    def flush(self) -> None:
        """Called before each checkpoint: publish what is due (e.g. closed bins)."""

    def checkpoint(self) -> Any:
        """The state to store with the offsets (plain JSON)."""
        return None

    # -- outputs, queued until the next checkpoint ---------------------------------------

    def emit(self, records: Sequence[Record], origin: str | None = None) -> None:
        """Queue records for the next checkpoint (their envelope decides the topic)."""
        by_topic: dict[str, list[Record]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        for topic, group in by_topic.items():
            self._outputs.setdefault((topic, origin or self.id), []).extend(encode_lines(group))
        self.context.metrics.inc(self.id, "sent", len(records))

    def emit_lines(self, topic: str, lines: list[bytes], origin: str | None = None) -> None:
        """Queue envelope lines already encoded for ``topic`` (as :meth:`emit` would)."""
        self._outputs.setdefault((topic, origin or self.id), []).extend(lines)
        self.context.metrics.inc(self.id, "sent", len(lines))

    def reject(self, raw: bytes, reason: str) -> None:
        """Send one input line to the dead-letter topic with the reason (counted)."""
        line = dead_letter(raw, reason, self.id)
        self._outputs.setdefault((DEADLETTER_TOPIC, DEADLETTER_ORIGIN), []).append(line)
        self.context.metrics.inc(self.id, "dropped")

    def take_outputs(self) -> list[tuple[str, str, list[bytes]]]:
        """The queued outputs as (topic, origin, lines), no longer queued."""
        outputs = [(topic, origin, lines) for (topic, origin), lines in self._outputs.items()]
        self._outputs = {}
        return outputs

    def requeue(self, outputs: list[tuple[str, str, list[bytes]]]) -> None:
        """Put outputs back in front of the queue (their checkpoint failed)."""
        queued, self._outputs = self._outputs, {}
        for topic, origin, lines in outputs:
            self._outputs[(topic, origin)] = list(lines)
        for key, lines in queued.items():
            self._outputs.setdefault(key, []).extend(lines)

    def pending_lines(self) -> int:
        """How many output lines wait for the next checkpoint."""
        return sum(len(lines) for lines in self._outputs.values())
