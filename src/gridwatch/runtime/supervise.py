"""One running component: built, started, kept alive, stopped, with the state `/health` shows.

What happens after an error depends on its kind: a :class:`~gridwatch.errors.ConfigurationError`
stops the component as ``failed`` with the reason (retrying cannot fix a setting); any other
error restarts it with backoff from its last commit. Per-record errors never get here: they are
dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gridwatch.components import Component, Context, Job, Sink, Source, SourceBatch, Transform
from gridwatch.config.pipeline import ComponentSpec
from gridwatch.errors import ConfigurationError
from gridwatch.retry import Backoff, sleep_unless
from gridwatch.runtime.consume import JobStrategy, SinkStrategy, Stopping, Strategy, consume
from gridwatch.runtime.publish import Publisher
from gridwatch.runtime.reader import BusReader

log = logging.getLogger(__name__)
STOP_GRACE_S = 2.0
"""How long past the drain deadline a component may take to commit before it is cancelled."""


class Supervised:
    """A component and the task that runs it."""

    def __init__(self, spec: ComponentSpec, context: Context, publisher: Publisher) -> None:
        self.spec = spec
        self.context = context
        self.publisher = publisher
        self.state = "starting"
        self.reason: str | None = None
        self.starts = 0
        self.stopping = Stopping(asyncio.Event())
        self.reader: BusReader | None = None
        self.task: asyncio.Task[None] | None = None
        self.component: Component = spec.cls(spec.id, spec.config, context)

    @property
    def group(self) -> str | None:
        """The consumer group of a sink or job."""
        return None if self.reader is None else self.reader.group

    def lag(self) -> int:
        """Lines of its inputs that the group has not committed (0 for others)."""
        return 0 if self.reader is None else self.reader.pending()

    def describe(self) -> dict[str, Any]:
        """Kind, state, how often it was started, and why it is not well (if it is not)."""
        described: dict[str, Any] = {"kind": self.spec.kind, "state": self.state}
        described["starts"] = self.starts
        if self.reason:
            described["reason"] = self.reason
        return described

    def set_state(self, state: str, reason: str | None = None) -> None:
        """Record the component's state (and why, when it is not well)."""
        self.state, self.reason = state, reason

    async def start(self) -> None:
        """Open a transform now; start a source, sink or job in its own task."""
        component = self.component
        if isinstance(component, Transform):
            self.starts += 1
            try:
                await asyncio.to_thread(component.open)
                self.set_state("running")
            except ConfigurationError as exc:
                self._failed(exc)
            return
        if isinstance(component, Source):
            body: Callable[[], Awaitable[None]] = lambda: self._run_source(component)  # noqa: E731
        else:
            body = self._consume
        self.task = asyncio.create_task(self._supervise(body), name=self.spec.id)

    async def stop(self, deadline: float) -> None:
        """Stop, letting a sink or job drain until ``deadline`` (``time.monotonic()``) and
        commit; cancel whatever is still running shortly after it."""
        self.stopping.deadline = deadline
        self.stopping.stop.set()
        if self.task is not None:
            timeout = max(0.0, deadline - time.monotonic()) + STOP_GRACE_S
            done, _ = await asyncio.wait({self.task}, timeout=timeout)
            if not done:
                log.warning("%s did not stop in time; cancelling it", self.spec.id)
                self.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.task
        if isinstance(self.component, Transform):
            await asyncio.to_thread(self.component.close)
        if self.state not in ("failed", "finished"):
            self.set_state("stopped")

    def cut_short(self) -> None:
        """Stop draining at once."""
        self.stopping.cut_short()

    # -- supervision ---------------------------------------------------------------------

    async def _supervise(self, body: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(1.0, 60.0)
        stop = self.stopping.stop
        while not stop.is_set():
            self.starts += 1
            try:
                await body()
                return
            except ConfigurationError as exc:
                self._failed(exc)
                return
            except Exception as exc:
                self.set_state("retrying", f"{type(exc).__name__}: {exc}")
                self.context.metrics.inc(self.spec.id, "errors")
                log.exception("%s failed; restarting from its last commit", self.spec.id)
                if await sleep_unless(stop, backoff.next()):
                    return

    def _failed(self, exc: ConfigurationError) -> None:
        self.set_state("failed", str(exc))
        self.context.metrics.inc(self.spec.id, "errors")
        log.error("%s (%s) stopped: %s", self.spec.id, self.spec.cls.type_name, exc)

    # -- sources -------------------------------------------------------------------------

    async def _run_source(self, source: Source) -> None:
        stop = self.stopping.stop
        delivering: asyncio.Task[None] | None = None
        try:
            await source.open(await asyncio.to_thread(self.context.bus.position, source.id))
            self.set_state("running")
            # One batch is appended (in a thread) while the source prepares the next.
            async for batch in _until(stop, source.batches()):
                if delivering is not None:
                    await delivering
                delivering = asyncio.create_task(self._deliver(batch))
            if delivering is not None:
                await delivering
            if not stop.is_set():
                self.set_state("finished")
        finally:
            if delivering is not None:
                await asyncio.wait([delivering])
            with contextlib.suppress(Exception):
                await source.close()

    async def _deliver(self, batch: SourceBatch) -> None:
        """Publish a batch; a batch someone waits for (``acked``) is tried once."""
        if batch.acked is None:
            await self.publisher.deliver(
                self.spec.id, batch.records, batch.rejected, batch.position, self.stopping.stop
            )
            return
        try:
            await asyncio.to_thread(
                self.publisher.publish, self.spec.id, batch.records, batch.rejected, batch.position
            )
        except Exception as exc:
            log.error("appending %s's batch to the bus failed: %s", self.spec.id, exc)
            if not batch.acked.done():
                batch.acked.set_exception(exc)
            return
        if not batch.acked.done():
            batch.acked.set_result(None)

    # -- sinks and jobs ------------------------------------------------------------------

    async def _consume(self) -> None:
        component = self.component
        cfg: Any = component.config
        kind = "sink" if isinstance(component, Sink) else "job"
        self.reader = BusReader(
            self.context.bus, f"{kind}.{component.id}", cfg.inputs, cfg.max_batch_records, cfg.wants
        )
        strategy: Strategy
        if isinstance(component, Sink):
            strategy = SinkStrategy(component, self.context.bus, self.context.metrics, self._sink)
        else:
            assert isinstance(component, Job)
            strategy = JobStrategy(component, self.context.bus, self.context.metrics)
        self.set_state("running")
        await consume(strategy, self.reader, self.stopping, cfg.poll_interval_s)

    def _sink(self, state: str) -> None:
        if state != self.state:
            self.set_state(state)


async def _until(
    stop: asyncio.Event, batches: AsyncIterator[SourceBatch]
) -> AsyncIterator[SourceBatch]:
    """The source's batches, until ``stop`` (never cutting a delivery short)."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            pending = asyncio.ensure_future(anext(batches))
            await asyncio.wait({pending, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
                return
            try:
                yield pending.result()
            except GeneratorExit:
                return
    except StopAsyncIteration:
        return
    finally:
        stopping.cancel()
