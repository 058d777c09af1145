"""Services: long-running commands kept alive, health-checked, and given up on loudly.

A service that exits or turns unhealthy is restarted after a pause that doubles up to
``restart_max_s`` (a minute by default, never Marathon's hour) and goes back to the first
pause once the service has run for ``healthy_reset_s``. A service that fails ``max_failures``
times within ``failure_window_s`` is marked failed and reported instead of restarting forever.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

from gridwatch.bus.base import Bus
from gridwatch.config.schedule import ServiceConfig
from gridwatch.retry import Backoff, sleep_unless
from gridwatch.scheduler.batch import Notify
from gridwatch.scheduler.health import HealthChecker
from gridwatch.scheduler.process import Child, spawn
from gridwatch.scheduler.store import RunStore

log = logging.getLogger(__name__)


class Supervisor:
    """Keeps one service running until :meth:`stop`."""

    def __init__(
        self,
        service_id: str,
        config: ServiceConfig,
        *,
        store: RunStore,
        bus: Bus,
        notify: Notify,
        output_limit: int,
        token: int | None,
    ) -> None:
        self.id = service_id
        self.config = config
        self.store = store
        self.notify = notify
        self.output_limit = output_limit
        self.token = token
        self.state = "starting"
        self.pid: int | None = None
        self.restarts = 0
        self.last_reason: str | None = None
        self.started_at: float | None = None
        self._stop = asyncio.Event()
        self._revive = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.checker = (
            HealthChecker(config.health, bus, config.environment) if config.health else None
        )

    def start(self) -> None:
        """Run the supervision loop in the background."""
        self._task = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL) and the loop."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    def revive(self) -> None:
        """Start a failed service again (or restart a running one) with fresh counters."""
        self._revive.set()

    def describe(self) -> dict[str, Any]:
        """State for the API."""
        return {
            "id": self.id,
            "kind": "service",
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_reason": self.last_reason,
            "uptime_s": None if self.started_at is None else time.monotonic() - self.started_at,
        }

    async def _supervise(self) -> None:
        cfg = self.config
        backoff = Backoff(cfg.restart_initial_s, cfg.restart_max_s)
        failures: collections.deque[float] = collections.deque()
        while not self._stop.is_set():
            self._revive.clear()
            ran_s, failed = await self._life()
            if self._stop.is_set():
                break
            if self._revive.is_set():
                backoff.reset()
                failures.clear()
                continue
            if ran_s >= cfg.healthy_reset_s:
                backoff.reset()
            now = time.monotonic()
            if failed:
                failures.append(now)
            while failures and now - failures[0] > cfg.failure_window_s:
                failures.popleft()
            if len(failures) >= cfg.max_failures:
                await self._give_up(len(failures))
                backoff.reset()
                failures.clear()
                continue
            self.state = "backoff"
            if await sleep_unless(self._stop, backoff.next()):
                break
            self.restarts += 1
        self.state = "stopped"

    async def _give_up(self, count: int) -> None:
        self.state = "failed"
        log.error(
            "service %s failed %d times in %.0f s: giving up until revived or reloaded",
            self.id,
            count,
            self.config.failure_window_s,
        )
        self.notify(
            {
                "event": "service_failed",
                "task": self.id,
                "failures": count,
                "reason": self.last_reason,
                "restarts": self.restarts,
            }
        )
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._stop, self._revive)]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _life(self) -> tuple[float, bool]:
        """Run the process once; how long it ran and whether it ended as a failure."""
        cfg = self.config
        run_id = await asyncio.to_thread(
            self.store.start,
            self.id,
            "service",
            slot_ms=None,
            trigger="service",
            attempt=self.restarts + 1,
            token=self.token,
        )
        started = time.monotonic()
        try:
            child = await spawn(cfg.command, cfg.environment, cfg.working_dir, self.output_limit)
        except OSError as exc:
            self.last_reason = f"cannot start {cfg.command[0]!r}: {exc.strerror}"
            await asyncio.to_thread(self.store.end, run_id, "failed", reason=self.last_reason)
            return 0.0, True
        self.pid, self.started_at, self.state = child.pid, started, "running"
        log.info("service %s started (pid %d)", self.id, child.pid)
        state, code, reason = await self._watch(child)
        ran_s = time.monotonic() - started
        self.pid, self.started_at, self.last_reason = None, None, reason
        await asyncio.to_thread(
            self.store.end,
            run_id,
            state,
            exit_code=code,
            reason=reason,
            output=child.output.value(),
            truncated=child.output.truncated,
        )
        if state == "unhealthy":
            self.notify(
                {"event": "service_unhealthy", "task": self.id, "reason": reason, "run_id": run_id}
            )
        if state not in ("killed",):
            log.warning("service %s: %s after %.1f s", self.id, reason, ran_s)
        return ran_s, state in ("failed", "unhealthy", "exited")

    async def _watch(self, child: Child) -> tuple[str, int | None, str]:
        waiter = asyncio.ensure_future(child.wait())
        health = asyncio.ensure_future(self._health_loop())
        stopper = asyncio.ensure_future(self._stop.wait())
        reviver = asyncio.ensure_future(self._revive.wait())
        try:
            await asyncio.wait(
                {waiter, health, stopper, reviver}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for future in (health, stopper, reviver):
                future.cancel()
        if waiter.done():
            code = waiter.result()
            return ("exited" if code == 0 else "failed"), code, f"exited with status {code}"
        waiter.cancel()
        code = await child.stop(self.config.stop_timeout_s)
        if self._stop.is_set():
            return "killed", code, "stopped by the scheduler"
        if self._revive.is_set():
            return "killed", code, "restarted on request"
        return "unhealthy", code, f"unhealthy: {health.result()}"

    async def _health_loop(self) -> str:
        """Return the reason once ``unhealthy_after`` checks in a row failed."""
        checker = self.checker
        if checker is None or checker.config is None:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")
        cfg = checker.config
        checker.restart()
        await asyncio.sleep(cfg.grace_s)
        failed = 0
        while True:
            problem = await checker.check()
            if problem is None:
                failed = 0
                self.state = "running"
            else:
                failed += 1
                self.state = "unhealthy"
                log.warning(
                    "service %s health check failed (%d/%d): %s",
                    self.id,
                    failed,
                    cfg.unhealthy_after,
                    problem,
                )
                if failed >= cfg.unhealthy_after:
                    return problem
            await asyncio.sleep(cfg.interval_s)
