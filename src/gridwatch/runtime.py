"""The runtime: runs a pipeline's sources, transforms, sinks and jobs around the bus.

Sources append to the bus (their position stored in the same transaction); every sink and job
follows the bus through its own consumer group, so a slow or broken one never holds up the
others. Offsets are committed only after a sink has made its writes durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from gridwatch.api.dashboard import mount_dashboard
from gridwatch.api.server import Server
from gridwatch.bus import Entry, SqliteBus
from gridwatch.components import (
    Batch,
    Component,
    Context,
    Job,
    Sink,
    Source,
    SourceBatch,
    Transform,
)
from gridwatch.config.pipeline import Pipeline
from gridwatch.consumer import BusReader, Polled
from gridwatch.deadletter import TOPIC as DEADLETTER_TOPIC
from gridwatch.deadletter import dead_letter
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder
from gridwatch.retry import Backoff, sleep_unless
from gridwatch.routing import DEADLETTER_ORIGIN, Router
from gridwatch.scheduler.core import Scheduler

log = logging.getLogger(__name__)
RETENTION_EVERY_S = 60.0


class Runtime:
    """Runs one pipeline in this process until :meth:`stop` (or SIGTERM / SIGINT)."""

    def __init__(self, pipeline: Pipeline, data_dir: Path, listen: str | None = None) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir
        self.listen = listen or pipeline.server.listen or "127.0.0.1:8080"
        self.metrics = Metrics()
        self.bus = SqliteBus(data_dir / "bus.db", pipeline.bus.durability)
        self.server = Server(self.metrics)
        self.context = Context(
            data_dir=data_dir,
            metrics=self.metrics,
            bus=self.bus,
            decoder=EnvelopeDecoder(pipeline.records.policy()),
            app=self.server.app,
        )
        self.components: dict[str, Component] = {
            spec.id: spec.cls(spec.id, spec.config, self.context)
            for spec in pipeline.components.values()
        }
        for spec in pipeline.components.values():
            self.metrics.declare(spec.id, spec.kind)
        transforms = {cid: c for cid, c in self.components.items() if isinstance(c, Transform)}
        consumed = {
            name
            for spec in pipeline.components.values()
            if spec.kind in ("sink", "job")
            for name in spec.inputs
        }
        inputs = {spec.id: spec.inputs for spec in pipeline.components.values()}
        self.router = Router(transforms, inputs, consumed, self.metrics)
        self.readers: dict[str, BusReader] = {}
        self.status: dict[str, str] = {cid: "starting" for cid in self.components}
        self.server.health = self.health
        self._drain_deadline: float | None = None
        self.scheduler = Scheduler(pipeline.schedule, self.context, pipeline.filename)
        mount_dashboard(self.server.app, pipeline.dashboard, self)
        self._sources_stop = asyncio.Event()
        self._consumers_stop = asyncio.Event()

    def health(self) -> dict[str, Any]:
        """What ``/health`` answers: overall status and each component's state."""
        failing = [cid for cid, state in self.status.items() if state == "retrying"]
        return {
            "status": "degraded" if failing else "ok",
            "components": {
                cid: {"kind": self.pipeline.components[cid].kind, "state": state}
                for cid, state in self.status.items()
            },
        }

    def stop(self) -> None:
        """Ask everything to finish its current batch, commit and return.

        A second call (a second Ctrl-C) cuts the sinks' drain short.
        """
        if self._sources_stop.is_set():
            log.info("stopping without waiting for the sinks to catch up")
            self._drain_deadline = 0.0
        else:
            log.info(
                "stopping: sinks write what the bus holds for up to %g s (again: now)",
                self.pipeline.bus.drain_timeout_s,
            )
        self._sources_stop.set()

    async def run(self) -> None:
        """Run until stopped; on the way out, drain sources, then commit sinks and jobs."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.scheduler.request_reload)
        self.metrics.gauge(
            "bus_lag_records", "Records not yet committed per consumer group.", "group", self._lags
        )
        await self.server.start(self.listen)
        await asyncio.to_thread(self._open_transforms)
        # Modules, configuration and components live as long as the process: keep the cyclic
        # collector from walking them again and again while batches come and go.
        gc.freeze()
        sources = [
            asyncio.create_task(self._run_source(c))
            for c in self.components.values()
            if isinstance(c, Source)
        ]
        consumers = [
            asyncio.create_task(self._supervise(c.id, functools.partial(self._run_sink, c)))
            for c in self.components.values()
            if isinstance(c, Sink)
        ]
        consumers += [
            asyncio.create_task(
                self._supervise(c.id, functools.partial(c.run, self._consumers_stop))
            )
            for c in self.components.values()
            if isinstance(c, Job)
        ]
        retention = asyncio.create_task(self._retention())
        scheduler = asyncio.create_task(self.scheduler.run(self._sources_stop))
        log.info(
            "pipeline %s running: %d components, listening on %s",
            self.pipeline.filename,
            len(self.components),
            self.listen,
        )
        try:
            await self._sources_stop.wait()
        finally:
            self._sources_stop.set()
            await asyncio.gather(*sources, scheduler, return_exceptions=True)
            self._consumers_stop.set()
            await asyncio.gather(*consumers, return_exceptions=True)
            retention.cancel()
            await asyncio.to_thread(self._close_transforms)
            await self.server.stop()
            self.bus.close()
            gc.unfreeze()
            log.info("pipeline stopped")

    # -- sources -------------------------------------------------------------------------

    async def _run_source(self, source: Source) -> None:
        spec = self.pipeline.components[source.id]
        backoff = Backoff(0.5, 30.0)
        while not self._sources_stop.is_set():
            # One batch is appended (in a thread) while the source prepares the next.
            delivering: asyncio.Task[None] | None = None
            try:
                await source.open(await asyncio.to_thread(self.bus.position, source.id))
                self.status[source.id] = "running"
                async for batch in self._until_stopped(source.batches()):
                    if delivering is not None:
                        await delivering
                    delivering = asyncio.create_task(self._deliver(source.id, batch))
                    backoff.reset()
                if delivering is not None:
                    await delivering
                if not self._sources_stop.is_set():
                    self.status[source.id] = "finished"
                return
            except Exception as exc:
                if delivering is not None:
                    await asyncio.wait([delivering])
                self.status[source.id] = "retrying"
                self.metrics.inc(source.id, "errors")
                log.error(
                    "source %s (%s) failed: %s; restarting", source.id, spec.cls.type_name, exc
                )
                if await sleep_unless(self._sources_stop, backoff.next()):
                    return
            finally:
                with contextlib.suppress(Exception):
                    await source.close()

    async def _until_stopped(
        self, batches: AsyncIterator[SourceBatch]
    ) -> AsyncIterator[SourceBatch]:
        """The source's batches, until the pipeline stops (never cutting a delivery short)."""
        stopping = asyncio.ensure_future(self._sources_stop.wait())
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

    async def _deliver(self, source_id: str, batch: SourceBatch) -> None:
        """Route a batch, append it durably with the source's position, then acknowledge it."""
        self.metrics.inc(source_id, "received", len(batch.records) + len(batch.rejected))
        dead = [dead_letter(r.raw, r.reason, source_id) for r in batch.rejected]
        position = None if batch.position is None else (source_id, batch.position)
        backoff = Backoff(0.2, 10.0)
        while True:
            try:
                await asyncio.to_thread(self._append, source_id, batch, dead, position)
                break
            except Exception as exc:
                self.metrics.inc(source_id, "errors")
                log.error("appending %s's batch to the bus failed: %s", source_id, exc)
                if batch.acked is not None:
                    if not batch.acked.done():
                        batch.acked.set_exception(exc)
                    return
                if await sleep_unless(self._consumers_stop, backoff.next()):
                    return
        self.metrics.inc(source_id, "sent", len(batch.records))
        self.metrics.inc(source_id, "dropped", len(batch.rejected))
        if batch.acked is not None and not batch.acked.done():
            batch.acked.set_result(None)

    def _append(self, source_id: str, batch: SourceBatch, dead: list[bytes], position: Any) -> None:
        extra: list[Entry] = [(DEADLETTER_TOPIC, DEADLETTER_ORIGIN, dead)] if dead else []
        self.router.append(self.bus, source_id, batch.records, extra, position)

    # -- sinks ---------------------------------------------------------------------------

    async def _run_sink(self, sink: Sink) -> None:
        cfg = sink.config
        reader = BusReader(self.bus, f"sink.{sink.id}", cfg.inputs, cfg.max_batch_records)
        self.readers[sink.id] = reader
        await asyncio.to_thread(sink.open, await reader.load())
        self.status[sink.id] = "running"
        last_commit = time.monotonic()
        stalled = False  # a write failed while stopping: commit what was written and go
        try:
            while not stalled and await self._more_to_consume(reader):
                busy = False
                async for polled in reader.each_topic():
                    busy = True
                    stalled = not await self._write(sink, polled)
                    if stalled:
                        break
                    reader.advance(polled)
                if reader.uncommitted and sink.commit_due(time.monotonic() - last_commit):
                    await self._commit_sink(sink, reader)
                    last_commit = time.monotonic()
                if not busy:
                    await sleep_unless(self._consumers_stop, cfg.poll_interval_s)
            if reader.uncommitted:
                await self._commit_sink(sink, reader)
        finally:
            # After a failure the sink restarts from its last commit, which it can rebuild.
            await asyncio.to_thread(sink.close)

    async def _more_to_consume(self, reader: BusReader) -> bool:
        """Until stopped; once stopping, until the group has caught up or the drain time is up."""
        if not self._consumers_stop.is_set():
            return True
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.pipeline.bus.drain_timeout_s
        return time.monotonic() < self._drain_deadline and await reader.lag() > 0

    async def _write(self, sink: Sink, polled: Polled) -> bool:
        """Write one batch, retrying until it is taken; ``False`` if stopped meanwhile."""
        self.metrics.inc(sink.id, "dropped", polled.lost)
        if not polled.lines:
            return True
        batch = Batch(polled.topic, polled.lines)
        backoff = Backoff(sink.config.retry_initial_s, sink.config.retry_max_s)
        while True:
            try:
                result = await asyncio.to_thread(sink.write, batch)
                break
            except Exception as exc:
                self.status[sink.id] = "retrying"
                self.metrics.inc(sink.id, "errors")
                pause = backoff.next()
                log.warning(
                    "sink %s: write of %d records to %s failed (attempt %d): %s; "
                    "retrying in %.1f s",
                    sink.id,
                    len(batch),
                    polled.topic,
                    backoff.attempt,
                    exc,
                    pause,
                )
                if await sleep_unless(self._consumers_stop, pause):
                    return False
        self.status[sink.id] = "running"
        self.metrics.inc(sink.id, "received", len(batch))
        self.metrics.inc(sink.id, "sent", len(batch) - len(result.rejected))
        if result.rejected:
            attempts = backoff.attempt + 1
            dead = [
                dead_letter(batch.lines[i], reason, sink.id, attempts)
                for i, reason in result.rejected
            ]
            self.metrics.inc(sink.id, "dropped", len(dead))
            await asyncio.to_thread(self.bus.append, [(DEADLETTER_TOPIC, DEADLETTER_ORIGIN, dead)])
        return True

    async def _commit_sink(self, sink: Sink, reader: BusReader) -> None:
        """Two-phase commit; a failure propagates so the sink restarts from its last commit
        (its in-memory offsets may be ahead of what it actually made durable)."""
        state = await asyncio.to_thread(sink.prepare_commit)
        await reader.commit(state)
        await asyncio.to_thread(sink.finish_commit)

    # -- jobs, transforms, housekeeping --------------------------------------------------

    async def _supervise(self, component_id: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run a sink's or job's loop; restart it with backoff if it fails, until stopped."""
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                self.status[component_id] = "running"
                await body()
                self.status[component_id] = "stopped"
                return
            except Exception:
                self.status[component_id] = "retrying"
                self.metrics.inc(component_id, "errors")
                log.exception("%s failed; restarting from its last commit", component_id)
                if await sleep_unless(self._consumers_stop, backoff.next()):
                    return

    def _open_transforms(self) -> None:
        for component in self.components.values():
            if isinstance(component, Transform):
                component.open()
                self.status[component.id] = "running"

    def _close_transforms(self) -> None:
        for component in self.components.values():
            if isinstance(component, Transform):
                component.close()

    async def _retention(self) -> None:
        settings = self.pipeline.bus
        max_age = None if settings.retention_hours is None else settings.retention_hours * 3600
        while True:
            try:
                deleted = await asyncio.to_thread(
                    self.bus.enforce_retention, max_age, settings.retention_bytes_per_topic
                )
                if deleted:
                    log.info("bus retention deleted %d records", deleted)
            except Exception as exc:
                log.error("bus retention failed: %s", exc)
            await asyncio.sleep(RETENTION_EVERY_S)

    def _lags(self) -> dict[str, float]:
        lags: dict[str, float] = {}
        for reader in self.readers.values():
            topics = self.bus.topics_from(reader.origins)
            lags[reader.group] = float(self.bus.lag(reader.group, topics)) if topics else 0.0
        return lags
