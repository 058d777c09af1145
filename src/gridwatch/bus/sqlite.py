"""The embedded bus: a durable log on SQLite in WAL mode.

Each appended batch of one topic is one row (its lines joined by newlines), so a batch of
1,000 records costs one insert and one fsync at commit. Offsets count lines, as in Kafka.
Several processes may share the file: writers serialise on SQLite's write lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import msgspec

from gridwatch.bus.base import Entry, GroupState, JoinedLines, Slice, TopicInfo, joined

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics(
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    start_offset INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches(
    topic_id INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    appended_ms INTEGER NOT NULL,
    origin TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY(topic_id, base_offset)
);
CREATE INDEX IF NOT EXISTS batches_by_age ON batches(appended_ms);
CREATE TABLE IF NOT EXISTS topic_origins(
    topic_id INTEGER NOT NULL, origin TEXT NOT NULL, PRIMARY KEY(topic_id, origin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets(
    grp TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY(grp, topic_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_state(grp TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions(
    source TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL
);
"""

_READ = """
SELECT base_offset, count, origin, payload FROM batches
WHERE topic_id = :t AND base_offset >= COALESCE(
    (SELECT base_offset FROM batches WHERE topic_id = :t AND base_offset <= :o
     ORDER BY base_offset DESC LIMIT 1), :o)
ORDER BY base_offset LIMIT :n
"""

# One statement appends a batch: the batch's base offset is the topic's next offset, and a
# trigger (TEMP: it exists only on this process's connections, the file is unchanged)
# advances the topic. A lone statement is its own transaction, so an append of one topic
# releases and takes back the GIL once instead of at every step of a longer transaction.
_INSERT_BATCH = """
INSERT INTO batches(topic_id, base_offset, count, appended_ms, origin, payload)
SELECT id, next_offset, ?, ?, ?, ? FROM topics WHERE id = ?
"""
_ADVANCE_TOPIC = """
CREATE TEMP TRIGGER IF NOT EXISTS advance_topic AFTER INSERT ON main.batches BEGIN
    UPDATE topics SET next_offset = next_offset + NEW.count,
        bytes = bytes + length(NEW.payload) WHERE id = NEW.topic_id;
END
"""

Durability = Literal["full", "normal"]
PAGE_SIZE = 16384
CHECKPOINT_BYTES = 4096 * 1000


def state_json(state: Any) -> str:
    """A group's state as JSON text; a ``msgspec.Raw`` is JSON its owner already encoded."""
    if isinstance(state, msgspec.Raw):
        return bytes(state).decode()
    return json.dumps(state)


class SqliteBus:
    """A :class:`~gridwatch.bus.base.Bus` in one SQLite file.

    ``durability="full"`` fsyncs every commit (an acknowledged append survives power loss);
    ``"normal"`` survives a crash of the process but not of the machine.
    """

    def __init__(self, path: Path | str, durability: Durability = "full") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sync = "FULL" if durability == "full" else "NORMAL"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._topic_ids: dict[str, int] = {}
        self._known_origins: set[tuple[str, str]] = set()
        self._schema_ready = False
        self._conn()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=60)
            # Batches are blobs of hundreds of kB: 16 kB pages write them with a quarter of the
            # system calls of the 4 kB default. Only takes effect when the file is created.
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute("PRAGMA busy_timeout=60000")
            # Checkpoint after the same amount of log as with 4 kB pages (1,000 pages): the
            # append that crosses it waits for the copy, so its size bounds that wait.
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_BYTES // page_size}")
            if not self._schema_ready:
                conn.executescript(_SCHEMA)
                self._schema_ready = True
            conn.execute(_ADVANCE_TOPIC)
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                # Ids and origins cached inside the failed transaction may not exist.
                self._topic_ids.clear()
                self._known_origins.clear()
                raise

    def _topic_id(self, conn: sqlite3.Connection, name: str, create: bool) -> int | None:
        topic_id = self._topic_ids.get(name)
        if topic_id is None:
            row = conn.execute("SELECT id FROM topics WHERE name = ?", (name,)).fetchone()
            if row is None:
                if not create:
                    return None
                row = conn.execute(
                    "INSERT INTO topics(name) VALUES (?) RETURNING id", (name,)
                ).fetchone()
            topic_id = int(row[0])
            self._topic_ids[name] = topic_id
        return topic_id

    def append(
        self,
        entries: Iterable[Entry],
        position: tuple[str, Any] | None = None,
        commit: tuple[str, Mapping[str, int], Any] | None = None,
    ) -> None:
        now_ms = int(time.time() * 1000)
        entries = [entry for entry in entries if entry[2]]
        if len(entries) == 1 and position is None and commit is None:
            topic, origin, lines = entries[0]
            topic_id = self._topic_ids.get(topic)
            if topic_id is not None and (topic, origin) in self._known_origins:
                with self._write_lock:
                    self._insert_batch(self._conn(), topic_id, origin, lines, now_ms)
                return
        with self._transaction() as conn:
            for topic, origin, lines in entries:
                if lines:
                    self._append_topic(conn, origin, topic, lines, now_ms)
            if position is not None:
                conn.execute(
                    "INSERT INTO positions(source, state, updated_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT(source) DO UPDATE SET state = excluded.state, "
                    "updated_ms = excluded.updated_ms",
                    (position[0], json.dumps(position[1]), now_ms),
                )
            if commit is not None:
                self._commit(conn, *commit)

    def _append_topic(
        self, conn: sqlite3.Connection, origin: str, topic: str, lines: Sequence[bytes], now_ms: int
    ) -> None:
        topic_id = self._topic_id(conn, topic, create=True)
        assert topic_id is not None  # created when missing
        if (topic, origin) not in self._known_origins:
            conn.execute(
                "INSERT OR IGNORE INTO topic_origins(topic_id, origin) VALUES (?, ?)",
                (topic_id, origin),
            )
            self._known_origins.add((topic, origin))
        self._insert_batch(conn, topic_id, origin, lines, now_ms)

    @staticmethod
    def _insert_batch(
        conn: sqlite3.Connection, topic_id: int, origin: str, lines: Sequence[bytes], now_ms: int
    ) -> None:
        conn.execute(_INSERT_BATCH, (len(lines), now_ms, origin, joined(lines), topic_id))

    def read(self, topic: str, offset: int, max_lines: int) -> list[Slice]:
        conn = self._conn()
        topic_id = self._topic_id(conn, topic, create=False)
        if topic_id is None:
            return []
        slices: list[Slice] = []
        total = 0
        # Every row holds at least one line, so max_lines rows are always enough.
        rows = conn.execute(_READ, {"t": topic_id, "o": offset, "n": max_lines})
        for base, count, origin, payload in rows:
            skip = max(0, offset - base)
            if skip >= count:
                continue
            # Lines stay one buffer: consumers that want them one by one split it.
            rest = bytes(payload).split(b"\n", skip)[-1] if skip else bytes(payload)
            slices.append(Slice(topic, base + skip, origin, JoinedLines(rest, count - skip)))
            total += count - skip
            if total >= max_lines:
                break
        return slices

    def topics(self) -> dict[str, TopicInfo]:
        rows = self._conn().execute("SELECT name, start_offset, next_offset, bytes FROM topics")
        return {name: TopicInfo(name, start, end, size) for name, start, end, size in rows}

    def topics_from(self, origins: Collection[str]) -> list[str]:
        marks = ",".join("?" * len(origins))
        rows = self._conn().execute(
            "SELECT DISTINCT t.name FROM topic_origins o JOIN topics t ON t.id = o.topic_id "
            f"WHERE o.origin IN ({marks}) ORDER BY t.name",
            tuple(origins),
        )
        return [name for (name,) in rows]

    def committed(self, group: str) -> GroupState:
        conn = self._conn()
        rows = conn.execute(
            "SELECT t.name, g.next_offset FROM group_offsets g JOIN topics t ON t.id = g.topic_id "
            "WHERE g.grp = ?",
            (group,),
        )
        offsets = {name: int(offset) for name, offset in rows}
        row = conn.execute("SELECT state FROM group_state WHERE grp = ?", (group,)).fetchone()
        return GroupState(offsets, json.loads(row[0]) if row else None)

    def commit(self, group: str, offsets: Mapping[str, int], state: Any = None) -> None:
        with self._transaction() as conn:
            self._commit(conn, group, offsets, state)

    def _commit(
        self, conn: sqlite3.Connection, group: str, offsets: Mapping[str, int], state: Any
    ) -> None:
        for topic, offset in offsets.items():
            topic_id = self._topic_id(conn, topic, create=True)
            conn.execute(
                "INSERT INTO group_offsets(grp, topic_id, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT(grp, topic_id) DO UPDATE SET next_offset = excluded.next_offset",
                (group, topic_id, offset),
            )
        if state is not None:
            conn.execute(
                "INSERT INTO group_state(grp, state) VALUES (?, ?) "
                "ON CONFLICT(grp) DO UPDATE SET state = excluded.state",
                (group, state_json(state)),
            )

    def position(self, source: str) -> Any:
        row = (
            self._conn()
            .execute("SELECT state FROM positions WHERE source = ?", (source,))
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def lag(self, group: str, topics: Collection[str]) -> int:
        marks = ",".join("?" * len(topics))
        (lag,) = (
            self._conn()
            .execute(
                "SELECT COALESCE(SUM(MAX(0, t.next_offset - MAX(t.start_offset, "
                "COALESCE(g.next_offset, 0)))), 0) "
                "FROM topics t LEFT JOIN group_offsets g ON g.topic_id = t.id AND g.grp = ? "
                f"WHERE t.name IN ({marks})",
                (group, *topics),
            )
            .fetchone()
        )
        return int(lag)

    def enforce_retention(self, max_age_s: float | None, max_bytes: int | None) -> int:
        deleted = 0
        with self._transaction() as conn:
            if max_age_s is not None:
                cutoff = int((time.time() - max_age_s) * 1000)
                deleted += self._delete(conn, "appended_ms < ?", (cutoff,))
            if max_bytes is not None:
                deleted += self._delete(
                    conn,
                    "rowid IN (SELECT rowid FROM (SELECT rowid, SUM(length(payload)) OVER "
                    "(PARTITION BY topic_id ORDER BY base_offset DESC) AS newer FROM batches) "
                    "WHERE newer > ?)",
                    (max_bytes,),
                )
        return deleted

    def _delete(self, conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> int:
        rows = conn.execute(
            f"DELETE FROM batches WHERE {where} RETURNING topic_id, base_offset + count, "
            "length(payload), count",
            args,
        ).fetchall()
        for topic_id, end, size, _ in rows:
            conn.execute(
                "UPDATE topics SET start_offset = MAX(start_offset, ?), bytes = bytes - ? "
                "WHERE id = ?",
                (end, size, topic_id),
            )
        return sum(row[3] for row in rows)

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
