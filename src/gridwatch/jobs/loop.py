"""The loop every stream job shares: consume its inputs, compute, and checkpoint atomically.

Outputs are held back until the next checkpoint, and then appended to the bus in the same
SQLite transaction as the consumed offsets and the job's state. A crash therefore loses
nothing and duplicates nothing on the bus: after a restart the job resumes from the state and
offsets of its last checkpoint and recomputes the same outputs (exactly-once into the bus).
Checkpoints happen every ``commit_interval_s``, not every batch, so large states (accounting
maps) are not serialised for each batch; and at least ``CHECKPOINT_SPACING`` times as long
apart as the last checkpoint took, so that a large state (a day of bins kept for late records)
costs a bounded share of the time when the job catches up on a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from gridwatch.bus.base import Entry
from gridwatch.components import Job
from gridwatch.consumer import BusReader
from gridwatch.deadletter import TOPIC as DEADLETTER_TOPIC
from gridwatch.deadletter import dead_letter
from gridwatch.record import Record, encode_lines
from gridwatch.routing import DEADLETTER_ORIGIN

log = logging.getLogger(__name__)
MAX_PENDING_LINES = 50_000
"""Checkpoint early when this many output lines wait, to bound memory."""
CHECKPOINT_SPACING = 10.0
"""The next checkpoint waits at least this many times the duration of the last one."""


class StreamJob(Job):
    """A job made of pure per-batch logic (:meth:`process`) around the shared bus loop."""

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

    # -- outputs -------------------------------------------------------------------------

    def _pending(self) -> dict[tuple[str, str], list[bytes]]:
        if not hasattr(self, "_outputs"):
            self._outputs: dict[tuple[str, str], list[bytes]] = {}
        return self._outputs

    def emit(self, records: list[Record], origin: str | None = None) -> None:
        """Queue records for the next checkpoint (their envelope decides the topic)."""
        pending = self._pending()
        by_topic: dict[str, list[Record]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        for topic, group in by_topic.items():
            pending.setdefault((topic, origin or self.id), []).extend(encode_lines(group))
        self.context.metrics.inc(self.id, "sent", len(records))

    def emit_lines(self, topic: str, lines: list[bytes], origin: str | None = None) -> None:
        """Queue envelope lines already encoded for ``topic`` (as :meth:`emit` would)."""
        self._pending().setdefault((topic, origin or self.id), []).extend(lines)
        self.context.metrics.inc(self.id, "sent", len(lines))

    def reject(self, raw: bytes, reason: str) -> None:
        """Send one input line to the dead-letter topic with the reason (counted)."""
        line = dead_letter(raw, reason, self.id)
        self._pending().setdefault((DEADLETTER_TOPIC, DEADLETTER_ORIGIN), []).append(line)
        self.context.metrics.inc(self.id, "dropped")

    def entries(self) -> list[Entry]:
        """The queued outputs as bus entries."""
        return [(topic, origin, lines) for (topic, origin), lines in self._pending().items()]

    def pending_lines(self) -> int:
        """How many output lines wait for the next checkpoint."""
        return sum(len(lines) for lines in self._pending().values())

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, compute and checkpoint until ``stop`` is set; checkpoint on the way out."""
        cfg = self.config
        reader = BusReader(self.context.bus, f"job.{self.id}", cfg.inputs, cfg.max_batch_records)
        self.restore(await reader.load())
        last_commit = time.monotonic()
        interval = cfg.commit_interval_s
        try:
            while not stop.is_set():
                busy = False
                async for polled in reader.each_topic():
                    busy = True
                    self.context.metrics.inc(self.id, "received", len(polled.lines))
                    self.context.metrics.inc(self.id, "dropped", polled.lost)
                    if polled.lines:
                        await asyncio.to_thread(self.process, polled.topic, polled.lines)
                    reader.advance(polled)
                await asyncio.to_thread(self.tick)
                # Spaced out only while catching up: once idle, the usual interval.
                waited = time.monotonic() - last_commit
                due = waited >= (interval if busy else cfg.commit_interval_s)
                if (reader.uncommitted or self.pending_lines()) and (
                    due or self.pending_lines() >= MAX_PENDING_LINES
                ):
                    started = time.monotonic()
                    await self._checkpoint(reader)
                    last_commit = time.monotonic()
                    spacing = CHECKPOINT_SPACING * (last_commit - started)
                    interval = max(cfg.commit_interval_s, spacing)
                if not busy:
                    await _sleep_unless(stop, cfg.poll_interval_s)
        finally:
            if reader.uncommitted or self.pending_lines():
                await self._checkpoint(reader)

    async def _checkpoint(self, reader: BusReader) -> None:
        """Append the queued outputs with the offsets and state; on failure keep them queued."""
        await asyncio.to_thread(self.flush)
        state = await asyncio.to_thread(self.checkpoint)
        commit = (reader.group, dict(reader.offsets), state)
        try:
            await asyncio.to_thread(self.context.bus.append, self.entries(), None, commit)
        except Exception as exc:
            self.context.metrics.inc(self.id, "errors")
            log.error("job %s: checkpoint failed, retrying at the next one: %s", self.id, exc)
            return
        self._pending().clear()
        reader.uncommitted = False


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
