"""The slot ledger: who leads, with which fencing token, and which slots were claimed.

A slot is (task, scheduled time in ms). A leader claims a slot before it starts a run; the
claim succeeds only if the slot was never claimed and the claimant still holds the lease with
the token it was given. Both conditions are checked in one statement, so no slot runs twice,
even when an old leader wakes up late. Two implementations: PostgreSQL (a lease row renewed on
the server's clock, for schedulers on several hosts) and SQLite beside a file lock (one host).
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from gridwatch.errors import ConfigurationError

SCHEDULED = ("schedule", "misfire")
"""Triggers whose slots count for the misfire policy (manual and parent runs do not)."""


def holder_name() -> str:
    """A name for this scheduler process that no other process shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Ledger(Protocol):
    """Leadership and slot claims shared by the schedulers of one group."""

    holder: str

    def acquire(self) -> int | None:
        """Take or renew the lease; the fencing token while leading, else ``None``."""
        ...

    def release(self) -> None:
        """Give the lease up so that another scheduler takes over at once."""
        ...

    def leader(self) -> str | None:
        """Who holds the lease now, if anyone."""
        ...

    def claim(self, task: str, slot_ms: int, token: int, trigger: str) -> bool:
        """Claim a slot under ``token``; ``False`` if it was claimed or the lease was lost."""
        ...

    def finish(self, task: str, slot_ms: int, state: str) -> None:
        """Record how a claimed slot ended."""
        ...

    def last_slot(self, task: str, triggers: tuple[str, ...] | None = None) -> int | None:
        """The latest claimed slot of a task (only of ``triggers`` if given)."""
        ...

    def last_success(self, task: str) -> int | None:
        """The latest slot of a task that succeeded."""
        ...

    def abandon(self, token: int) -> list[tuple[str, int]]:
        """Mark slots left running by earlier leaders as lost; return them."""
        ...

    def anchor(self, task: str, default_ms: int) -> int:
        """The remembered start of a task whose schedule has an empty start."""
        ...

    def close(self) -> None:
        """Release connections (and the lease)."""
        ...


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT,
    token INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS slots (task TEXT NOT NULL, slot_ms INTEGER NOT NULL,
    token INTEGER NOT NULL, holder TEXT NOT NULL, trigger TEXT NOT NULL, state TEXT NOT NULL,
    claimed_ms INTEGER NOT NULL, finished_ms INTEGER, PRIMARY KEY (task, slot_ms));
CREATE TABLE IF NOT EXISTS anchors (task TEXT PRIMARY KEY, start_ms INTEGER NOT NULL);
INSERT OR IGNORE INTO lease (id, holder, token) VALUES (1, NULL, 0);
"""


class SqliteLedger:
    """One host: an exclusive ``flock`` elects the leader, SQLite keeps token and slots."""

    def __init__(self, directory: Path) -> None:
        self.holder = holder_name()
        self.lock_path = directory / "scheduler.lock"
        self._lock_fd: int | None = None
        self._token: int | None = None
        self._mutex = threading.Lock()
        self._db = sqlite3.connect(
            directory / "scheduler-ledger.db",
            timeout=30,
            isolation_level=None,
            check_same_thread=False,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SQLITE_SCHEMA)

    def acquire(self) -> int | None:
        """Hold the lock (kept until the process ends or releases it)."""
        with self._mutex:
            if self._lock_fd is not None:
                return self._token
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            self._lock_fd = fd
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "UPDATE lease SET token = token + 1, holder = ? RETURNING token",
                    (self.holder,),
                ).fetchone()
            self._token = int(row[0])
            return self._token

    def release(self) -> None:
        """Drop the lock."""
        with self._mutex:
            if self._lock_fd is not None:
                self._db.execute("UPDATE lease SET holder = NULL WHERE holder = ?", (self.holder,))
                os.close(self._lock_fd)
                self._lock_fd = None
                self._token = None

    def leader(self) -> str | None:
        """The holder recorded with the current token."""
        row = self._db.execute("SELECT holder FROM lease").fetchone()
        return None if row is None else row[0]

    def claim(self, task: str, slot_ms: int, token: int, trigger: str) -> bool:
        """Insert the slot if the token is still the current one and the slot is free."""
        with self._mutex, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO slots (task, slot_ms, token, holder, trigger, state, "
                "claimed_ms) SELECT ?, ?, ?, ?, ?, 'running', ? "
                "WHERE EXISTS (SELECT 1 FROM lease WHERE token = ? AND holder = ?)",
                (task, slot_ms, token, self.holder, trigger, _now_ms(), token, self.holder),
            )
            return cursor.rowcount == 1

    def finish(self, task: str, slot_ms: int, state: str) -> None:
        """Store the slot's final state."""
        with self._mutex:
            self._db.execute(
                "UPDATE slots SET state = ?, finished_ms = ? WHERE task = ? AND slot_ms = ?",
                (state, _now_ms(), task, slot_ms),
            )

    def last_slot(self, task: str, triggers: tuple[str, ...] | None = None) -> int | None:
        """The latest slot claimed for ``task``."""
        sql, args = "SELECT max(slot_ms) FROM slots WHERE task = ?", [task]
        if triggers:
            sql += f" AND trigger IN ({','.join('?' * len(triggers))})"
            args += list(triggers)
        return _scalar(self._db.execute(sql, args).fetchone())

    def last_success(self, task: str) -> int | None:
        """The latest succeeded slot of ``task``."""
        row = self._db.execute(
            "SELECT max(slot_ms) FROM slots WHERE task = ? AND state = 'succeeded'", (task,)
        ).fetchone()
        return _scalar(row)

    def abandon(self, token: int) -> list[tuple[str, int]]:
        """Slots still 'running' under older tokens become 'lost'."""
        with self._mutex:
            rows = self._db.execute(
                "UPDATE slots SET state = 'lost', finished_ms = ? "
                "WHERE state = 'running' AND token < ? RETURNING task, slot_ms",
                (_now_ms(), token),
            ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def anchor(self, task: str, default_ms: int) -> int:
        """Insert the anchor if absent; return the stored one."""
        with self._mutex:
            self._db.execute(
                "INSERT OR IGNORE INTO anchors (task, start_ms) VALUES (?, ?)", (task, default_ms)
            )
            row = self._db.execute("SELECT start_ms FROM anchors WHERE task = ?", (task,))
            return int(row.fetchone()[0])

    def close(self) -> None:
        """Release the lock and close the database."""
        self.release()
        self._db.close()


def _scalar(row: Any) -> int | None:
    return None if row is None or row[0] is None else int(row[0])


def _now_ms() -> int:
    return round(time.time() * 1000)


def check_postgres_available() -> None:
    """Fail clearly when the PostgreSQL driver is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "schedule.ha.postgres_url needs the PostgreSQL driver: "
            "pip install 'gridwatch[postgres]'"
        ) from None
