"""Running one claimed slot of a batch task: attempts, retries, timeout, records to the bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any, Protocol

from gridwatch.config.schedule import TaskConfig
from gridwatch.record import DecodeResult
from gridwatch.retry import Backoff, sleep_unless
from gridwatch.scheduler.process import Child, spawn
from gridwatch.scheduler.store import RunStore

log = logging.getLogger(__name__)
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Slot:
    """A claimed slot: which task, when it was due, why it runs, under which token."""

    task: str
    slot_ms: int
    trigger: str
    token: int


@dataclass
class Outcome:
    """How an attempt ended."""

    state: str
    exit_code: int | None
    reason: str | None
    records: int = 0


class Notify(Protocol):
    """Where failures are reported."""

    def __call__(self, event: dict[str, Any]) -> None:
        """Send (in the background) one notification."""


class Publish(Protocol):
    """The publish path: decode an NDJSON body from ``origin`` and append it to the bus."""

    def __call__(self, origin: str, body: bytes, position: Any = None) -> DecodeResult:
        """Raise when the bus refuses the append."""


class BatchRunner:
    """Runs the attempts of a slot and records each one."""

    def __init__(
        self, publish: Publish, store: RunStore, output_limit: int, notify: Notify
    ) -> None:
        self.publish = publish
        self.store = store
        self.output_limit = output_limit
        self.notify = notify

    async def execute(self, task: TaskConfig, slot: Slot, stop: asyncio.Event) -> str:
        """Run attempts until one succeeds, retries run out or ``stop``; the final state."""
        backoff = Backoff(task.retry_initial_s, task.retry_max_s)
        attempt = 0
        while True:
            attempt += 1
            run_id = await asyncio.to_thread(
                self.store.start,
                slot.task,
                "task",
                slot_ms=slot.slot_ms,
                trigger=slot.trigger,
                attempt=attempt,
                token=slot.token,
            )
            outcome, child = await self._attempt(task, slot, stop)
            output = child.output.value() if child else b""
            truncated = child.output.truncated if child else False
            await asyncio.to_thread(
                self.store.end,
                run_id,
                outcome.state,
                exit_code=outcome.exit_code,
                reason=outcome.reason,
                output=output,
                truncated=truncated,
                records=outcome.records,
            )
            log.info(
                "task %s slot %d attempt %d: %s%s",
                slot.task,
                slot.slot_ms,
                attempt,
                outcome.state,
                f" ({outcome.reason})" if outcome.reason else "",
            )
            if outcome.state in ("succeeded", "killed"):
                return outcome.state
            if attempt > task.retries or stop.is_set():
                self.notify(_failure_event(slot, attempt, outcome, run_id, output))
                return outcome.state
            if await sleep_unless(stop, backoff.next()):
                return "killed"

    async def _attempt(
        self, task: TaskConfig, slot: Slot, stop: asyncio.Event
    ) -> tuple[Outcome, Child | None]:
        if task.collector is not None:
            argv = [sys.executable, "-m", "gridwatch.scheduler.collect", task.collector]
            argv.append(json.dumps(task.collector_args))
        else:
            argv = list(task.command or [])
        environment = {
            **task.environment,
            "GRIDWATCH_TASK": slot.task,
            "GRIDWATCH_SLOT_MS": str(slot.slot_ms),
            "GRIDWATCH_TRIGGER": slot.trigger,
        }
        try:
            child = await spawn(
                argv,
                environment,
                task.working_dir,
                self.output_limit,
                split_stdout=task.collector is not None,
            )
        except OSError as exc:
            return Outcome("failed", None, f"cannot start {argv[0]!r}: {exc.strerror}"), None
        pump = asyncio.ensure_future(self._pump(slot.task, child, stop))
        waiter = asyncio.ensure_future(child.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=task.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if waiter in done:
            code = waiter.result()
            records, error = await _records(pump)
            if error is not None:
                return Outcome("failed", code, error, records), child
            if code == 0:
                return Outcome("succeeded", 0, None, records), child
            return Outcome("failed", code, _exit_reason(code), records), child
        waiter.cancel()
        code = await child.stop(STOP_GRACE_S)
        records, _ = await _records(pump)
        if stop.is_set():
            return Outcome("killed", code, "scheduler stopping", records), child
        return Outcome("timeout", code, f"ran longer than {task.timeout_s:g} s", records), child

    async def _pump(self, task_id: str, child: Child, stop: asyncio.Event) -> int:
        """Put a collector's records onto the bus as they arrive; return how many were taken."""
        stream = child.stdout
        if stream is None:
            return 0
        taken = 0
        pending = b""
        while chunk := await stream.read(1 << 20):
            pending += chunk
            complete, _, pending = pending.rpartition(b"\n")
            if complete:
                taken += await self._append(task_id, complete, stop)
        if pending.strip():
            taken += await self._append(task_id, pending, stop)
        return taken

    async def _append(self, task_id: str, body: bytes, stop: asyncio.Event) -> int:
        """Publish a collector's lines, retried until the bus takes them; the count taken.

        The records are the collector's output: a run that stops while the bus refuses them
        fails (and is retried as a run), it never drops them silently.
        """
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                result = await asyncio.to_thread(self.publish, task_id, body)
                return len(result.records)
            except Exception as exc:
                log.error("task %s: appending to the bus failed: %s", task_id, exc)
                if await sleep_unless(stop, backoff.next()):
                    raise RuntimeError(f"stopped before the bus took {task_id}'s records") from exc


async def _records(pump: asyncio.Future[int]) -> tuple[int, str | None]:
    try:
        return await pump, None
    except Exception as exc:
        return 0, str(exc)


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            import signal

            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _failure_event(
    slot: Slot, attempt: int, outcome: Outcome, run_id: int, output: bytes
) -> dict[str, Any]:
    return {
        "event": "task_failed",
        "task": slot.task,
        "slot_ms": slot.slot_ms,
        "trigger": slot.trigger,
        "attempt": attempt,
        "state": outcome.state,
        "exit_code": outcome.exit_code,
        "reason": outcome.reason,
        "run_id": run_id,
        "output_tail": output[-2000:].decode("utf-8", errors="replace"),
    }
