"""The runtime: runs a pipeline's components around the bus, and reloads its file.

Sources publish through the one :class:`~gridwatch.runtime.publish.Publisher`; every sink and
job follows the bus through its own consumer group with the one consume loop
(:mod:`gridwatch.runtime.consume`), so a slow or broken one never holds up the others. Each
component runs supervised (:mod:`gridwatch.runtime.supervise`): a configuration error stops it
as ``failed`` with the reason, anything else restarts it with backoff from its last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gridwatch.api.app import build_app
from gridwatch.api.running import ReloadOutcome
from gridwatch.api.server import Server
from gridwatch.bus import open_bus
from gridwatch.components import Component, Context, Transform
from gridwatch.config import load_pipeline
from gridwatch.config.pipeline import ComponentSpec, Pipeline
from gridwatch.config.problems import ConfigProblems
from gridwatch.metrics import Metrics
from gridwatch.runtime.publish import Publisher
from gridwatch.runtime.supervise import Supervised
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
        self.bus = open_bus(pipeline.bus, data_dir)
        self.context = Context(
            data_dir=data_dir,
            metrics=self.metrics,
            bus=self.bus,
            decoder=pipeline.records.decoder(),
        )
        self.publisher = Publisher(self.bus, self.metrics, self.context.decoder)
        self.scheduler = Scheduler(
            pipeline.schedule, self.context, pipeline.filename, self.publisher.publish_ndjson
        )
        self.supervised: dict[str, Supervised] = {}
        self.server = Server(build_app(self, self.metrics), pipeline.server.header_timeout_s)
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._stopping_twice = False

    # -- what the API reads --------------------------------------------------------------

    @property
    def components(self) -> dict[str, Component]:
        """The running components by id."""
        return {cid: s.component for cid, s in self.supervised.items()}

    @property
    def status(self) -> dict[str, str]:
        """Each component's state: starting, running, retrying, failed, stopped, finished."""
        return {cid: s.state for cid, s in self.supervised.items()}

    def health(self) -> dict[str, Any]:
        """What ``/health`` answers: overall status and each component's state."""
        components = {cid: s.describe() for cid, s in self.supervised.items()}
        bad = any(s.state in ("retrying", "failed") for s in self.supervised.values())
        return {"status": "degraded" if bad else "ok", "components": components}

    def lags(self) -> dict[str, float]:
        """Records not yet committed, per consumer group of every sink and job."""
        return {s.group: float(s.lag()) for s in self.supervised.values() if s.group is not None}

    # -- life cycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask everything to finish its current batch, commit and return.

        A second call (a second Ctrl-C) cuts the sinks' drain short.
        """
        if self._stop.is_set():
            log.info("stopping without waiting for the sinks to catch up")
            for supervised in self.supervised.values():
                supervised.cut_short()
            return
        log.info(
            "stopping: sinks write what the bus holds for up to %g s (again: now)",
            self.pipeline.bus.drain_timeout_s,
        )
        self._stop.set()

    def request_reload(self) -> None:
        """Re-read the pipeline file and apply its changes (safe from a signal handler)."""
        asyncio.get_running_loop().create_task(self.reload())

    async def run(self) -> None:
        """Run until stopped; on the way out, stop sources, then drain sinks and jobs."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self.metrics.gauge(
            "bus_lag_records", "Records not yet committed per consumer group.", "group", self.lags
        )
        await self.server.start(self.listen, self.pipeline.server)
        await self._start(list(self.pipeline.components.values()))
        # Modules, configuration and components live as long as the process: keep the cyclic
        # collector from walking them again and again while batches come and go.
        gc.freeze()
        retention = asyncio.create_task(self._retention())
        scheduler = asyncio.create_task(self.scheduler.run(self._stop))
        log.info(
            "pipeline %s running: %d components, listening on %s://%s",
            self.pipeline.filename,
            len(self.supervised),
            "http" if self.pipeline.server.tls is None else "https",
            self.listen,
        )
        try:
            await self._stop.wait()
        finally:
            self._stop.set()
            await self._stop_components(list(self.supervised), self.pipeline.bus.drain_timeout_s)
            await asyncio.gather(scheduler, return_exceptions=True)
            retention.cancel()
            await self.server.stop()
            self.bus.close()
            gc.unfreeze()
            log.info("pipeline stopped")

    async def reload(self) -> ReloadOutcome:
        """Apply the pipeline file as it is now: start added components, stop removed ones,
        restart changed ones, leave the others running, apply the schedule's and the server
        tokens' changes. A file with problems changes nothing."""
        async with self._reloading:
            try:
                new = await asyncio.to_thread(load_pipeline, self.pipeline.filename)
            except ConfigProblems as exc:
                log.error("reload refused, the running pipeline stays:\n%s", exc)
                return ReloadOutcome(False, problems=[p.render(exc.filename) for p in exc.problems])
            old = self.pipeline
            changed = sorted(_diff(old.components, new.components))
            await self._stop_components([c for c in changed if c in self.supervised], 0.0)
            self.pipeline = new
            await self._start([new.components[c] for c in changed if c in new.components])
            self.scheduler.request_reload(new.schedule)
            log.info("reload applied: %s", ", ".join(changed) or "no component changes")
            outcome = ReloadOutcome(
                True,
                components=changed,
                schedule=sorted(
                    _diff(old.schedule.tasks, new.schedule.tasks)
                    | _diff(old.schedule.services, new.schedule.services)
                ),
                restart_needed=old.server.restart_needed(new.server)
                + (["schedule.ha"] if old.schedule.ha != new.schedule.ha else []),
            )
            if outcome.restart_needed:
                log.warning("reload: %s apply after a restart", ", ".join(outcome.restart_needed))
            return outcome

    async def _start(self, specs: list[ComponentSpec]) -> None:
        """Build and start components: transforms first (sources publish through them)."""
        for spec in sorted(specs, key=lambda s: s.kind != "transform"):
            self.metrics.declare(spec.id, spec.kind)
            supervised = Supervised(spec, self.context, self.publisher)
            self.supervised[spec.id] = supervised
            await supervised.start()
        self._rewire()

    async def _stop_components(self, ids: list[str], drain_s: float) -> None:
        """Stop sources first, then sinks and jobs (draining for what is left of ``drain_s``),
        then transforms; whatever is still running shortly after that is cancelled."""
        deadline = time.monotonic() + drain_s
        order = {"source": 0, "sink": 1, "job": 1, "transform": 2}
        for rank in (0, 1, 2):
            group = [self.supervised[c] for c in ids if order[self.supervised[c].spec.kind] == rank]
            await asyncio.gather(*(s.stop(deadline) for s in group))
        for cid in ids:
            del self.supervised[cid]
        self._rewire()

    def _rewire(self) -> None:
        """Point the publish path at the transforms and consumers running now."""
        transforms = {
            cid: s.component
            for cid, s in self.supervised.items()
            if isinstance(s.component, Transform)
        }
        specs = [s.spec for s in self.supervised.values()]
        self.publisher.rewire(
            transforms,
            {s.id: s.inputs for s in specs},
            {name for s in specs if s.kind in ("sink", "job") for name in s.inputs},
        )

    async def _retention(self) -> None:
        while True:
            settings = self.pipeline.bus
            hours = settings.retention_hours
            try:
                deleted = await asyncio.to_thread(
                    self.bus.enforce_retention,
                    None if hours is None else hours * 3600,
                    settings.retention_bytes_per_topic,
                )
                if deleted:
                    log.info("bus retention deleted %d records", deleted)
            except Exception as exc:
                log.error("bus retention failed: %s", exc)
            await asyncio.sleep(RETENTION_EVERY_S)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """The keys added, removed or whose values differ."""
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
