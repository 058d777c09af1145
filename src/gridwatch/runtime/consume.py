"""The one consume loop: sinks and jobs follow the bus through their own consumer groups.

The loop polls the group's topics, hands each batch over and commits; what differs is the
commit strategy:

- a **sink** writes each batch, then commits in two phases (``prepare_commit`` makes the
  writes durable and returns state, the offsets and state are stored, ``finish_commit``);
- a **job** processes each batch and queues outputs, which are appended in the same bus
  transaction as the consumed offsets and the job's state (exactly-once into the bus).

A sink batch that fails with anything but a passing error (a server down, a full disk) is split
until the records that break it are found: those become dead letters with the sink's reason,
the rest is written, so one record never jams a sink.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from gridwatch.bus.base import Bus
from gridwatch.components import Batch, Job, Sink
from gridwatch.errors import RetryableError
from gridwatch.metrics import Metrics
from gridwatch.record.deadletter import DEADLETTER_ORIGIN, dead_letter
from gridwatch.record.deadletter import TOPIC as DEADLETTER_TOPIC
from gridwatch.retry import Backoff, sleep_unless
from gridwatch.runtime.reader import BusReader, Polled

log = logging.getLogger(__name__)

PASSING_ERRORS: tuple[type[BaseException], ...] = (RetryableError, OSError, TimeoutError)
"""A write failing with one of these is retried whole; other failures are looked for records."""
MAX_PENDING_LINES = 50_000
"""A job checkpoints early when this many output lines wait, to bound memory."""
CHECKPOINT_SPACING = 10.0
"""A job's next checkpoint waits at least this many times as long as its last one took."""


@dataclass
class Stopping:
    """When the loop ends: once ``stop`` is set, it drains until caught up or until
    ``deadline`` (a ``time.monotonic()`` value; without one, ``drain_s`` after the stop)."""

    stop: asyncio.Event
    drain_s: float = 0.0
    deadline: float | None = None
    urgent: bool = False

    def cut_short(self) -> None:
        """Stop draining at once (a second Ctrl-C)."""
        self.urgent = True


class Strategy(Protocol):
    """What one kind of consumer does with batches and commits."""

    async def open(self, state: Any) -> None:
        """Start from the state stored with the group's last commit."""

    async def handle(self, polled: Polled, stop: asyncio.Event) -> bool:
        """Take one batch; ``False`` if it could not (stopping while retrying)."""

    async def idle(self) -> None:
        """Between polls."""

    def commit_due(self, since_commit_s: float, busy: bool) -> bool:
        """Whether to commit now."""

    async def commit(self, reader: BusReader) -> None:
        """Store the handled offsets together with what the strategy must keep."""

    async def close(self) -> None:
        """Release what ``open`` took."""


async def consume(
    strategy: Strategy, reader: BusReader, stopping: Stopping, poll_interval_s: float
) -> None:
    """Follow the bus until stopped (then drain), handing batches to ``strategy``."""
    await strategy.open(await reader.load())
    last_commit = time.monotonic()
    try:
        while await _more(reader, stopping):
            busy = stalled = False
            async for polled in reader.each_topic():
                busy = True
                if not await strategy.handle(polled, stopping.stop):
                    stalled = True
                    break
                reader.advance(polled)
            await strategy.idle()
            if strategy.commit_due(time.monotonic() - last_commit, busy):
                await strategy.commit(reader)
                last_commit = time.monotonic()
            if stalled:
                break
            if not busy:
                await sleep_unless(stopping.stop, poll_interval_s)
        await strategy.commit(reader)
    finally:
        await strategy.close()


async def _more(reader: BusReader, stopping: Stopping) -> bool:
    """Until stopped; once stopping, until the group has caught up or the drain time is up."""
    if not stopping.stop.is_set():
        return True
    if stopping.urgent:
        return False
    if stopping.deadline is None:
        stopping.deadline = time.monotonic() + stopping.drain_s
    return time.monotonic() < stopping.deadline and await reader.lag() > 0


class SinkStrategy:
    """Write each batch; commit in two phases around the sink's own durability."""

    def __init__(self, sink: Sink, bus: Bus, metrics: Metrics, on_state: Any) -> None:
        self.sink = sink
        self.bus = bus
        self.metrics = metrics
        self.on_state = on_state  # called with "running" / "retrying"

    async def open(self, state: Any) -> None:
        await asyncio.to_thread(self.sink.open, state)

    async def handle(self, polled: Polled, stop: asyncio.Event) -> bool:
        sink_id = self.sink.id
        self.metrics.inc(sink_id, "dropped", polled.lost)
        if not polled.lines:
            return True
        self.metrics.inc(sink_id, "received", len(polled.lines))
        dead: list[bytes] = []
        written = await self._write(Batch(polled.topic, polled.lines), stop, dead)
        if written is None:
            return False
        if dead:
            self.metrics.inc(sink_id, "dropped", len(dead))
            await asyncio.to_thread(self.bus.append, [(DEADLETTER_TOPIC, DEADLETTER_ORIGIN, dead)])
        self.metrics.inc(sink_id, "sent", written)
        return True

    async def _write(self, batch: Batch, stop: asyncio.Event, dead: list[bytes]) -> int | None:
        """Write ``batch``, splitting it around records that break the sink; the number
        written, or ``None`` if stopped while a passing failure was retried."""
        backoff = Backoff(self.sink.config.retry_initial_s, self.sink.config.retry_max_s)
        while True:
            try:
                result = await asyncio.to_thread(self.sink.write, batch)
            except PASSING_ERRORS as exc:
                self._failed(batch, exc, backoff)
                if await sleep_unless(stop, backoff.next()):
                    return None
                continue
            except Exception as exc:
                return await self._split(batch, exc, stop, dead)
            self.on_state("running")
            attempts = backoff.attempt + 1
            dead.extend(
                dead_letter(batch.lines[i], reason, self.sink.id, attempts)
                for i, reason in result.rejected
            )
            return len(batch) - len(result.rejected)

    async def _split(
        self, batch: Batch, exc: Exception, stop: asyncio.Event, dead: list[bytes]
    ) -> int | None:
        self.metrics.inc(self.sink.id, "errors")
        if len(batch) == 1:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("sink %s rejected a record of %s: %s", self.sink.id, batch.topic, reason)
            dead.append(dead_letter(batch.lines[0], reason, self.sink.id))
            return 0
        half = len(batch) // 2
        written = 0
        for part in (batch.lines[:half], batch.lines[half:]):
            taken = await self._write(Batch(batch.topic, list(part)), stop, dead)
            if taken is None:
                return None
            written += taken
        return written

    def _failed(self, batch: Batch, exc: BaseException, backoff: Backoff) -> None:
        self.on_state("retrying")
        self.metrics.inc(self.sink.id, "errors")
        log.warning(
            "sink %s: write of %d records to %s failed (attempt %d): %s; retrying",
            self.sink.id,
            len(batch),
            batch.topic,
            backoff.attempt + 1,
            exc,
        )

    async def idle(self) -> None:
        return None

    def commit_due(self, since_commit_s: float, busy: bool) -> bool:
        return self.sink.commit_due(since_commit_s)

    async def commit(self, reader: BusReader) -> None:
        # A failure propagates: the sink restarts from its last commit, which it can rebuild.
        if not reader.uncommitted:
            return
        state = await asyncio.to_thread(self.sink.prepare_commit)
        await reader.commit(state)
        await asyncio.to_thread(self.sink.finish_commit)

    async def close(self) -> None:
        await asyncio.to_thread(self.sink.close)


class JobStrategy:
    """Process each batch; append outputs, offsets and state in one bus transaction.

    Checkpoints happen every ``commit_interval_s`` and, while catching up, at least
    ``CHECKPOINT_SPACING`` times as long apart as the last one took, so that a large state
    costs a bounded share of the time.
    """

    def __init__(self, job: Job, bus: Bus, metrics: Metrics) -> None:
        self.job = job
        self.bus = bus
        self.metrics = metrics
        self.interval_s: float = job.config.commit_interval_s

    async def open(self, state: Any) -> None:
        await asyncio.to_thread(self.job.restore, state)

    async def handle(self, polled: Polled, stop: asyncio.Event) -> bool:
        self.metrics.inc(self.job.id, "received", len(polled.lines))
        self.metrics.inc(self.job.id, "dropped", polled.lost)
        if polled.lines:
            await asyncio.to_thread(self.job.process, polled.topic, polled.lines)
        return True

    async def idle(self) -> None:
        await asyncio.to_thread(self.job.tick)

    def commit_due(self, since_commit_s: float, busy: bool) -> bool:
        if self.job.pending_lines() >= MAX_PENDING_LINES:
            return True
        interval = self.interval_s if busy else self.job.config.commit_interval_s
        return since_commit_s >= interval

    async def commit(self, reader: BusReader) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self.job.flush)
        if not reader.uncommitted and not self.job.pending_lines():
            return
        state = await asyncio.to_thread(self.job.checkpoint)
        outputs = self.job.take_outputs()
        commit = (reader.group, dict(reader.offsets), state)
        try:
            await asyncio.to_thread(self.bus.append, outputs, None, commit)
        except Exception as exc:
            self.job.requeue(outputs)
            self.metrics.inc(self.job.id, "errors")
            log.error("job %s: checkpoint failed, retrying at the next one: %s", self.job.id, exc)
            return
        reader.uncommitted = False
        spacing = CHECKPOINT_SPACING * (time.monotonic() - started)
        self.interval_s = max(self.job.config.commit_interval_s, spacing)

    async def close(self) -> None:
        return None
