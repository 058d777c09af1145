"""Run records: one row per attempt of a batch task and per life of a service process.

Kept in SQLite under the data dir (``scheduler.db``), with the tail of each run's output once
it has exited, like ``docker logs``. A scheduler that starts marks the runs that it left
``running`` when it died as ``lost``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL, kind TEXT NOT NULL, slot_ms INTEGER, trigger TEXT NOT NULL,
    attempt INTEGER NOT NULL, state TEXT NOT NULL, started_ms INTEGER NOT NULL,
    ended_ms INTEGER, exit_code INTEGER, reason TEXT, records INTEGER NOT NULL DEFAULT 0,
    output BLOB, output_truncated INTEGER NOT NULL DEFAULT 0, host TEXT NOT NULL,
    token INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_task ON runs (task, id);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_ms);
"""
FINAL_STATES = ("succeeded", "failed", "timeout", "killed", "lost", "skipped", "unhealthy")


@dataclass
class Run:
    """One run record (``output`` only when asked for)."""

    id: int
    task: str
    kind: str
    slot_ms: int | None
    trigger: str
    attempt: int
    state: str
    started_ms: int
    ended_ms: int | None
    exit_code: int | None
    reason: str | None
    records: int
    output_truncated: bool
    host: str
    token: int | None
    output: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (``None`` while running)."""
        return None if self.ended_ms is None else (self.ended_ms - self.started_ms) / 1000

    def as_json(self) -> dict[str, Any]:
        """As the API shows it."""
        out = asdict(self)
        out["duration_s"] = self.duration_s
        if out["output"] is None:
            del out["output"]
        return out


_COLUMNS = (
    "id, task, kind, slot_ms, trigger, attempt, state, started_ms, ended_ms, exit_code, "
    "reason, records, output_truncated, host, token"
)


class RunStore:
    """The run records of this host."""

    def __init__(self, path: Path, host: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.host = host
        self._mutex = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def mark_lost(self) -> int:
        """Runs left 'running' by a previous life of this process become 'lost'."""
        with self._mutex:
            cursor = self._db.execute(
                "UPDATE runs SET state = 'lost', ended_ms = ?, reason = 'scheduler stopped' "
                "WHERE state = 'running' AND host = ?",
                (_now_ms(), self.host),
            )
            return cursor.rowcount

    def start(
        self,
        task: str,
        kind: str,
        *,
        slot_ms: int | None,
        trigger: str,
        attempt: int,
        token: int | None,
        started_ms: int | None = None,
    ) -> int:
        """Record a run that starts now; return its id."""
        with self._mutex:
            cursor = self._db.execute(
                "INSERT INTO runs (task, kind, slot_ms, trigger, attempt, state, started_ms, "
                "host, token) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (task, kind, slot_ms, trigger, attempt, started_ms or _now_ms(), self.host, token),
            )
            return int(cursor.lastrowid or 0)

    def end(
        self,
        run_id: int,
        state: str,
        *,
        exit_code: int | None = None,
        reason: str | None = None,
        output: bytes = b"",
        truncated: bool = False,
        records: int = 0,
    ) -> None:
        """Record how a run ended, with the tail of its output."""
        with self._mutex:
            self._db.execute(
                "UPDATE runs SET state = ?, ended_ms = ?, exit_code = ?, reason = ?, output = ?, "
                "output_truncated = ?, records = ? WHERE id = ?",
                (state, _now_ms(), exit_code, reason, output, int(truncated), records, run_id),
            )

    def skipped(self, task: str, slot_ms: int, trigger: str, reason: str) -> None:
        """Record a slot that was not run, and why."""
        run_id = self.start(task, "task", slot_ms=slot_ms, trigger=trigger, attempt=0, token=None)
        self.end(run_id, "skipped", reason=reason)

    def runs(self, task: str | None = None, limit: int = 50, since_ms: int = 0) -> list[Run]:
        """The latest runs, newest first."""
        sql = f"SELECT {_COLUMNS} FROM runs WHERE started_ms >= ?"
        args: list[Any] = [since_ms]
        if task is not None:
            sql += " AND task = ?"
            args.append(task)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._mutex:
            rows = self._db.execute(sql, args).fetchall()
        return [_run(row) for row in rows]

    def run(self, run_id: int) -> Run | None:
        """One run with its output."""
        with self._mutex:
            row = self._db.execute(
                f"SELECT {_COLUMNS}, output FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            return None
        run = _run(row[:-1])
        run.output = (row[-1] or b"").decode("utf-8", errors="replace")
        return run

    def prune(self, keep_days: float) -> int:
        """Delete runs that ended before the retention window."""
        cutoff = _now_ms() - round(keep_days * 86400_000)
        with self._mutex:
            cursor = self._db.execute(
                "DELETE FROM runs WHERE ended_ms IS NOT NULL AND ended_ms < ?", (cutoff,)
            )
            return cursor.rowcount

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _run(row: Any) -> Run:
    values = list(row)
    values[12] = bool(values[12])
    return Run(*values)


def _now_ms() -> int:
    return round(time.time() * 1000)
