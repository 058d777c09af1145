"""The scheduler: elects a leader, and on the leader runs batch tasks and services.

Every process that runs a pipeline file with a ``schedule:`` section takes part in the election
(:mod:`gridwatch.scheduler.ledger`). The leader computes each task's slots, claims a slot in
the ledger under its fencing token just before starting it, applies the misfire policy for
slots missed while nobody led, triggers dependent tasks when their parents succeeded, and
supervises the services. Losing the lease stops the services and the scheduling at once; runs
already started finish. ``reload`` (SIGHUP) re-reads the file and applies the differences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridwatch.components import Context
from gridwatch.config.schedule import HaSettings, ScheduleSettings, TaskConfig
from gridwatch.scheduler.batch import BatchRunner, Publish, Slot
from gridwatch.scheduler.ledger import SCHEDULED, Ledger, SqliteLedger
from gridwatch.scheduler.reports import Notifier, digest, send_mail
from gridwatch.scheduler.services import Supervisor
from gridwatch.scheduler.store import RunStore
from gridwatch.timespec import IsoSchedule, Schedule, parse_schedule

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
DIGEST_TASK = "_digest"


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class NotLeader(Exception):
    """This scheduler does not lead; the message names the leader."""


class Scheduler:
    """Runs the ``schedule:`` section of a pipeline in this process."""

    def __init__(
        self,
        settings: ScheduleSettings,
        context: Context,
        filename: str | None,
        publish: Publish,
    ) -> None:
        self.settings = settings
        self.context = context
        self.filename = filename
        self.host = socket.gethostname()
        self.store = RunStore(context.data_dir / "scheduler.db", self.host)
        self.notifier = Notifier(settings.reports)
        self.runner = BatchRunner(publish, self.store, settings.output_max_bytes, self.notifier)
        self.ledger: Ledger | None = None
        self.token: int | None = None
        self.next_slots: dict[str, datetime | None] = {}
        self.running: dict[str, set[asyncio.Task[str]]] = defaultdict(set)
        self.refused = 0
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._children: set[asyncio.Task[None]] = set()
        self._services: dict[str, Supervisor] = {}
        self._runs_stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_requested: ScheduleSettings | None = None
        for task_id in settings.tasks:
            context.metrics.declare(task_id, "task")

    # -- the main loop -------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this scheduler holds the lease now."""
        return self.token is not None

    def request_reload(self, settings: ScheduleSettings) -> None:
        """Apply a reloaded pipeline file's schedule soon."""
        self._reload_requested = settings
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Take part in the election and lead when elected, until ``stop``."""
        lost = await asyncio.to_thread(self.store.mark_lost)
        if lost:
            log.warning("%d runs were still running when this scheduler last stopped", lost)
        pid_file = self.context.data_dir / "gridwatch.pid"
        pid_file.write_text(f"{os.getpid()}\n")
        ha = self.settings.ha
        self.ledger = await asyncio.to_thread(open_ledger, ha, self.context.data_dir)
        self.context.metrics.gauge(
            "scheduler_leader",
            "1 while this scheduler leads.",
            "holder",
            lambda: {self.ledger.holder if self.ledger else "": float(self.leading)},
        )
        last_renewed = time.monotonic()
        last_prune = 0.0
        try:
            while not stop.is_set():
                reachable, token = await self._acquire()
                now = time.monotonic()
                if token is not None:
                    last_renewed = now
                    if token != self.token:
                        await self._deposed()
                        await self._elected(token)
                elif self.leading and (reachable or now - last_renewed > ha.lease_s):
                    await self._deposed()
                if self._reload_requested is not None:
                    new, self._reload_requested = self._reload_requested, None
                    await self._reload(new)
                if now - last_prune > PRUNE_EVERY_S:
                    last_prune = now
                    await asyncio.to_thread(self.store.prune, self.settings.keep_runs_days)
                await self._pause(stop, ha.renew_interval_s)
        finally:
            await self._shutdown()
            with contextlib.suppress(OSError):
                pid_file.unlink()

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep until ``stop``, a reload request or ``seconds`` have passed."""
        self._wake.clear()
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _acquire(self) -> tuple[bool, int | None]:
        """Whether the ledger answered, and our token if we lead."""
        assert self.ledger is not None
        try:
            return True, await asyncio.to_thread(self.ledger.acquire)
        except Exception as exc:
            log.error("scheduler: cannot reach the ledger to renew the lease: %s", exc)
            return False, None

    async def _shutdown(self) -> None:
        await self._deposed(shutting_down=True)
        self._runs_stop.set()
        runs = [t for tasks in self.running.values() for t in tasks]
        if runs:
            log.info("scheduler: stopping %d running batch runs", len(runs))
            await asyncio.gather(*runs, return_exceptions=True)
        await self.notifier.drain()
        if self.ledger is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.ledger.close)
        self.store.close()

    async def _elected(self, token: int) -> None:
        assert self.ledger is not None
        log.info("scheduler %s leads with token %d", self.ledger.holder, token)
        self.token = token
        for task_id, slot_ms in await asyncio.to_thread(self.ledger.abandon, token):
            log.error("task %s: slot %d was left running by a previous leader", task_id, slot_ms)
            self.notifier(
                {
                    "event": "slot_lost",
                    "task": task_id,
                    "slot_ms": slot_ms,
                    "reason": "the leader running it stopped; the slot is not run again",
                }
            )
        self._start_all()

    def _start_all(self) -> None:
        for task_id, task in self.settings.tasks.items():
            self._start_task(task_id, task)
        for task_id in self.settings.tasks:
            self._trigger_children(task_id)
        for service_id in self.settings.services:
            self._start_service(service_id)
        if self.settings.reports.digest is not None:
            self._loops[DIGEST_TASK] = asyncio.create_task(self._digest_loop())

    async def _deposed(self, shutting_down: bool = False) -> None:
        if self.token is not None:
            level = logging.INFO if shutting_down else logging.WARNING
            log.log(level, "scheduler: no longer leading (token %d)", self.token)
        self.token = None
        for loop in self._loops.values():
            loop.cancel()
        await asyncio.gather(*self._loops.values(), return_exceptions=True)
        self._loops.clear()
        self.next_slots.clear()
        await asyncio.gather(*(s.stop() for s in self._services.values()))
        self._services.clear()

    # -- batch tasks -----------------------------------------------------------------------

    def _start_task(self, task_id: str, task: TaskConfig) -> None:
        if task.enabled and task.schedule is not None and self.token is not None:
            self._loops[task_id] = asyncio.create_task(self._task_loop(task_id, task, self.token))

    async def _schedule(self, task_id: str, task: TaskConfig) -> Schedule:
        assert task.schedule is not None and self.ledger is not None
        schedule = parse_schedule(task.schedule, task.time_zone)
        if isinstance(schedule, IsoSchedule) and schedule.start is None:
            now_ms = _ms(datetime.now(UTC))
            start_ms = await asyncio.to_thread(self.ledger.anchor, task_id, now_ms)
            schedule = schedule.anchored(_at(start_ms))
        return schedule

    async def _task_loop(self, task_id: str, task: TaskConfig, token: int) -> None:
        try:
            schedule = await self._schedule(task_id, task)
            assert self.ledger is not None
            last = await asyncio.to_thread(self.ledger.last_slot, task_id, SCHEDULED)
            after = _at(last) if last is not None else None
            while True:
                due = await self._catch_up(task_id, task, schedule, after, token)
                self.next_slots[task_id] = due
                if due is None:
                    log.info("task %s: its schedule has no more slots", task_id)
                    return
                while (wait_s := (due - datetime.now(UTC)).total_seconds()) > 0:
                    await asyncio.sleep(min(wait_s, 60.0))
                await self._fire(task_id, task, due, "schedule", token)
                after = due
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s: scheduling failed", task_id)

    async def _catch_up(
        self,
        task_id: str,
        task: TaskConfig,
        schedule: Schedule,
        after: datetime | None,
        token: int,
    ) -> datetime | None:
        """Apply the misfire policy to slots after ``after`` that are too late; the next slot."""
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=task.misfire_grace_s)
        floor = cutoff if after is None else max(after, cutoff)
        missed = schedule.latest_at_or_before(cutoff)
        if after is not None and missed is not None and missed > after:
            if task.misfire == "run_once":
                log.warning("task %s: slot %s was missed; running it once now", task_id, missed)
                await self._fire(task_id, task, missed, "misfire", token)
            else:
                log.warning("task %s: skipping missed slots up to %s", task_id, missed)
                await asyncio.to_thread(
                    self.store.skipped,
                    task_id,
                    _ms(missed),
                    "misfire",
                    "missed while no scheduler ran (misfire: skip)",
                )
        return schedule.next_after(floor)

    async def _fire(
        self, task_id: str, task: TaskConfig, due: datetime, trigger: str, token: int
    ) -> bool:
        """Claim a slot and start its run; ``False`` when the claim was refused."""
        assert self.ledger is not None
        slot_ms = _ms(due)
        claimed = await asyncio.to_thread(self.ledger.claim, task_id, slot_ms, token, trigger)
        if not claimed:
            self.refused += 1
            log.warning(
                "task %s: slot %d refused (already claimed, or the lease was lost)",
                task_id,
                slot_ms,
            )
            return False
        if self.running[task_id] and not task.allow_overlap:
            await asyncio.to_thread(self.ledger.finish, task_id, slot_ms, "skipped")
            await asyncio.to_thread(
                self.store.skipped, task_id, slot_ms, trigger, "the previous run is still running"
            )
            return True
        slot = Slot(task_id, slot_ms, trigger, token)
        run = asyncio.create_task(self._execute(task, slot))
        self.running[task_id].add(run)
        run.add_done_callback(self.running[task_id].discard)
        return True

    async def _execute(self, task: TaskConfig, slot: Slot) -> str:
        state = "failed"
        try:
            state = await self.runner.execute(task, slot, self._runs_stop)
        finally:
            assert self.ledger is not None
            try:
                await asyncio.to_thread(self.ledger.finish, slot.task, slot.slot_ms, state)
            except Exception as exc:
                log.error(
                    "task %s: cannot record the end of slot %d: %s", slot.task, slot.slot_ms, exc
                )
        if state == "succeeded" and self.leading:
            self._trigger_children(slot.task)
        return state

    def _trigger_children(self, parent_id: str) -> None:
        for task_id, task in self.settings.tasks.items():
            if parent_id in task.parents and task.enabled:
                child = asyncio.create_task(self._maybe_run_child(task_id, task))
                self._children.add(child)
                child.add_done_callback(self._children.discard)

    async def _maybe_run_child(self, task_id: str, task: TaskConfig) -> None:
        """Run a dependent task for the newest slot that all its parents have succeeded in."""
        ledger, token = self.ledger, self.token
        if ledger is None or token is None:
            return
        successes = [await asyncio.to_thread(ledger.last_success, p) for p in task.parents]
        if any(s is None for s in successes):
            return
        slot_ms = min(s for s in successes if s is not None)
        last = await asyncio.to_thread(ledger.last_slot, task_id, ("parent",))
        if last is None or slot_ms > last:
            await self._fire(task_id, task, _at(slot_ms), "parent", token)

    # -- services, manual runs, reload ---------------------------------------------------

    def _start_service(self, service_id: str) -> None:
        config = self.settings.services[service_id]
        if not config.enabled or self.token is None:
            return
        supervisor = Supervisor(
            service_id,
            config,
            store=self.store,
            bus=self.context.bus,
            notify=self.notifier,
            output_limit=self.settings.output_max_bytes,
            token=self.token,
        )
        self._services[service_id] = supervisor
        supervisor.start()

    async def run_now(self, task_id: str) -> str:
        """Start a task's run now (or restart a service); what was done."""
        if self.token is None:
            leader = await asyncio.to_thread(self.ledger.leader) if self.ledger else None
            raise NotLeader(f"this scheduler does not lead; the leader is {leader or 'unknown'}")
        if task_id in self._services:
            self._services[task_id].revive()
            return "service restarting"
        task = self.settings.tasks.get(task_id)
        if task is None:
            raise KeyError(task_id)
        now = datetime.now(UTC)
        started = await self._fire(task_id, task, now, "manual", self.token)
        return "started" if started else "refused"

    async def _reload(self, new: ScheduleSettings) -> None:
        old = self.settings
        if new.ha != old.ha:
            log.warning("reload: schedule.ha changes take effect after a restart")
            new = new.model_copy(update={"ha": old.ha})
        self.settings = new
        self.notifier.settings = new.reports
        self.runner.output_limit = new.output_max_bytes
        changed = _diff(old.tasks, new.tasks) | _diff(old.services, new.services)
        for entry_id in sorted(changed):
            loop = self._loops.pop(entry_id, None)
            if loop is not None:
                loop.cancel()
            supervisor = self._services.pop(entry_id, None)
            if supervisor is not None:
                await supervisor.stop()
            self.next_slots.pop(entry_id, None)
        for entry_id in sorted(changed):
            if entry_id in new.tasks:
                self.context.metrics.declare(entry_id, "task")
                self._start_task(entry_id, new.tasks[entry_id])
            elif entry_id in new.services:
                self._start_service(entry_id)
        if new.reports.digest != old.reports.digest and self.token is not None:
            digest_loop = self._loops.pop(DIGEST_TASK, None)
            if digest_loop is not None:
                digest_loop.cancel()
            if new.reports.digest is not None:
                self._loops[DIGEST_TASK] = asyncio.create_task(self._digest_loop())
        log.info("reload applied: %s", ", ".join(sorted(changed)) or "no changes")

    # -- the digest and the API's view -----------------------------------------------------

    async def _digest_loop(self) -> None:
        settings = self.settings.reports.digest
        assert settings is not None and self.ledger is not None
        schedule = parse_schedule(settings.cron, settings.time_zone)
        while True:
            due = schedule.next_after(datetime.now(UTC))
            assert due is not None
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await self.send_digest(_ms(due))

    async def send_digest(self, slot_ms: int | None = None) -> bool:
        """Mail the digest (once per slot across all schedulers); whether one was sent."""
        settings = self.settings.reports.digest
        if settings is None or self.ledger is None or self.token is None:
            return False
        slot_ms = slot_ms if slot_ms is not None else _ms(datetime.now(UTC))
        claim = self.ledger.claim
        if not await asyncio.to_thread(claim, DIGEST_TASK, slot_ms, self.token, "digest"):
            return False
        now_ms = _ms(datetime.now(UTC))
        runs = await asyncio.to_thread(self.store.runs, None, 100000, now_ms - 86400_000)
        content = digest(runs, settings.flap_restarts, now_ms)
        state = "succeeded"
        if content is not None:
            try:
                await asyncio.to_thread(send_mail, settings, *content)
                log.info("digest mailed to %s", ", ".join(settings.recipients))
            except Exception as exc:
                state = "failed"
                log.error("digest mail failed: %s", exc)
        await asyncio.to_thread(self.ledger.finish, DIGEST_TASK, slot_ms, state)
        return content is not None and state == "succeeded"

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/v1/tasks`` answers."""
        last_runs = {r.task: r for r in reversed(self.store.runs(None, 1000))}
        tasks = []
        for task_id, task in self.settings.tasks.items():
            last = last_runs.get(task_id)
            nxt = self.next_slots.get(task_id)
            tasks.append(
                {
                    "id": task_id,
                    "kind": "task",
                    "schedule": task.schedule,
                    "parents": task.parents,
                    "enabled": task.enabled,
                    "running": len(self.running.get(task_id, ())),
                    "next_run": nxt.isoformat().replace("+00:00", "Z") if nxt else None,
                    "last_run": last.as_json() if last else None,
                }
            )
        services = []
        for service_id, config in self.settings.services.items():
            supervisor = self._services.get(service_id)
            entry: dict[str, Any] = (
                supervisor.describe()
                if supervisor
                else {
                    "id": service_id,
                    "kind": "service",
                    "state": "disabled" if not config.enabled else "standby",
                }
            )
            last = last_runs.get(service_id)
            entry["last_run"] = last.as_json() if last else None
            services.append(entry)
        return {
            "leader": self.leading,
            "holder": self.ledger.holder if self.ledger else None,
            "token": self.token,
            "refused_slots": self.refused,
            "tasks": tasks,
            "services": services,
        }


def open_ledger(settings: HaSettings, data_dir: Path) -> Ledger:
    """PostgreSQL when configured, else SQLite with a file lock."""
    if settings.postgres_url:
        from gridwatch.scheduler.pgledger import PostgresLedger

        return PostgresLedger(settings)
    directory = Path(settings.lock_dir) if settings.lock_dir else data_dir
    directory.mkdir(parents=True, exist_ok=True)
    return SqliteLedger(directory)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def pid_of(data_dir: Path) -> int | None:
    """The pid of the gridwatch process running with ``data_dir``, if any."""
    try:
        return int((data_dir / "gridwatch.pid").read_text().strip())
    except (OSError, ValueError):
        return None
