"""The embedded bus: a durable log on SQLite in WAL mode.

Each appended batch of one topic is one row (its lines joined by newlines), so a batch of
1,000 records costs one insert and one fsync at commit. Offsets count lines, as in Kafka.
Several processes may share the file: writers serialise on SQLite's write lock. A batch
appended with ids keeps their keys in its row; :mod:`gridwatch.bus.sqlite_ids` checks them.
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
import numpy as np
import numpy.typing as npt

from gridwatch.bus.base import (
    AppendResult,
    Entry,
    GroupState,
    IdWindow,
    JoinedLines,
    Slice,
    TopicInfo,
    joined,
)
from gridwatch.bus.idkeys import KEY_BYTES, fingerprints, id_keys
from gridwatch.bus.sqlite_ids import TakenIds, TopicIds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics(
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    start_offset INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    ids_from INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches(
    topic_id INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    appended_ms INTEGER NOT NULL,
    origin TEXT NOT NULL,
    ids BLOB,
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
INSERT INTO batches(topic_id, base_offset, count, appended_ms, origin, ids, payload)
SELECT id, next_offset, ?, ?, ?, ?, ? FROM topics WHERE id = ?
"""
# The same, only if the topic still ends where this process last saw it: then no other
# process appended ids that this one's index lacks (else nothing is inserted).
_INSERT_IF_AT = _INSERT_BATCH + " AND next_offset = ?"
# Files made before ids were kept get the columns added (at the end of the row).
_ADDED_COLUMNS = {"topics": ("ids_from", "INTEGER NOT NULL DEFAULT 0"), "batches": ("ids", "BLOB")}
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

    def __init__(
        self,
        path: Path | str,
        durability: Durability = "full",
        id_window: IdWindow | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sync = "FULL" if durability == "full" else "NORMAL"
        self.id_window = id_window or IdWindow()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._topic_ids: dict[str, int] = {}
        self._known_origins: set[tuple[str, str]] = set()
        self._taken = TakenIds()
        self._refused = 0
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
                _add_missing_columns(conn)
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
                self._taken.rolled_back()
                raise
            self._taken.committed()

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
    ) -> AppendResult:
        now_ms = int(time.time() * 1000)
        batches = [_Batch.of(entry, self.id_window.enabled) for entry in entries]
        wanted = [batch for batch in batches if batch.lines]
        alone = len(wanted) == 1 and position is None and commit is None
        if alone and self._fast(wanted[0], now_ms):
            return _result(batches)
        with self._transaction() as conn:
            for batch in wanted:
                self._append_topic(conn, batch, now_ms)
            if position is not None:
                conn.execute(
                    "INSERT INTO positions(source, state, updated_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT(source) DO UPDATE SET state = excluded.state, "
                    "updated_ms = excluded.updated_ms",
                    (position[0], json.dumps(position[1]), now_ms),
                )
            if commit is not None:
                self._commit(conn, *commit)
        with self._write_lock:
            self._refused += sum(batch.refused for batch in batches)
        return _result(batches)

    def _fast(self, batch: _Batch, now_ms: int) -> bool:
        """Append a batch of a known topic and origin in one statement, if that is safe."""
        topic_id = self._topic_ids.get(batch.topic)
        if topic_id is None or (batch.topic, batch.origin) not in self._known_origins:
            return False
        with self._write_lock:
            conn = self._conn()
            if batch.keys is None:
                self._insert_batch(conn, topic_id, batch, now_ms)
                return True
            return self._fast_checked(conn, topic_id, batch, now_ms)

    def _fast_checked(
        self, conn: sqlite3.Connection, topic_id: int, batch: _Batch, now_ms: int
    ) -> bool:
        """Append a batch with ids in one statement if this process's index says they are all
        new and no other process appended to the topic since it last looked; else leave it
        to a transaction that settles everything."""
        topic = self._taken.loaded(topic_id)
        if topic is None:
            return False
        index, base = topic.index, topic.known
        index.reserve(len(batch.lines))
        probe = index.probe(batch.prints)
        if not probe.clear:
            return False
        # Taken first, while the lookup's cache lines are hot; freed if not appended.
        taken = index.take(probe, base)
        values = (len(batch.lines), now_ms, batch.origin, batch.keys)
        try:
            cursor = conn.execute(_INSERT_IF_AT, (*values, joined(batch.lines), topic_id, base))
        except BaseException:
            index.untake(taken)
            raise
        if cursor.rowcount != 1:
            index.untake(taken)
            return False
        topic.known = base + len(batch.lines)
        return True

    def _append_topic(self, conn: sqlite3.Connection, batch: _Batch, now_ms: int) -> None:
        topic_id = self._topic_id(conn, batch.topic, create=True)
        assert topic_id is not None  # created when missing
        if (batch.topic, batch.origin) not in self._known_origins:
            conn.execute(
                "INSERT OR IGNORE INTO topic_origins(topic_id, origin) VALUES (?, ?)",
                (topic_id, batch.origin),
            )
            self._known_origins.add((batch.topic, batch.origin))
        topic: TopicIds | None = None
        if batch.keys is not None:
            topic = self._taken.sync(conn, topic_id)
            keep = self._taken.first_copies(conn, topic_id, topic, batch.keys, batch.prints)
            if keep is not None:
                batch.drop_copies(keep)
        if batch.lines:
            self._insert_batch(conn, topic_id, batch, now_ms)
            if topic is not None:
                self._taken.took(topic, batch.prints, topic.known)

    @staticmethod
    def _insert_batch(conn: sqlite3.Connection, topic_id: int, batch: _Batch, now_ms: int) -> None:
        conn.execute(
            _INSERT_BATCH,
            (len(batch.lines), now_ms, batch.origin, batch.keys, joined(batch.lines), topic_id),
        )

    def duplicates_refused(self) -> int:
        return self._refused

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
            if self.id_window.enabled:
                self._taken.forget(conn, int(time.time() * 1000), self.id_window)
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


class _Batch:
    """One entry on its way in: its lines and, when checked, their ids' keys."""

    def __init__(
        self, topic: str, origin: str, lines: Sequence[bytes], ids: Sequence[str] | None
    ) -> None:
        self.topic = topic
        self.origin = origin
        self.lines = lines
        self.refused = 0
        self.keys: bytes | None = None
        if ids is not None and lines:
            if len(ids) != len(lines):
                raise ValueError(f"{topic}: {len(ids)} ids for {len(lines)} lines")
            self.keys = id_keys(ids)
            self.prints = fingerprints(self.keys)

    @staticmethod
    def of(entry: Entry, check_ids: bool) -> _Batch:
        """The batch of an entry (its ids ignored unless ``check_ids``)."""
        ids = entry[3] if len(entry) == 4 and check_ids else None
        return _Batch(entry[0], entry[1], entry[2], ids)

    def drop_copies(self, keep: npt.NDArray[np.bool_]) -> None:
        """Keep only the lines (and keys) of ``keep``."""
        lines = list(self.lines)
        self.lines = [line for line, kept in zip(lines, keep.tolist(), strict=True) if kept]
        assert self.keys is not None
        self.keys = b"".join(
            self.keys[i * KEY_BYTES : (i + 1) * KEY_BYTES] for i in np.flatnonzero(keep).tolist()
        )
        self.prints = self.prints[keep]
        self.refused = len(lines) - len(self.lines)
        if not self.lines:
            self.keys = None


def _result(batches: list[_Batch]) -> AppendResult:
    return AppendResult(
        tuple(len(batch.lines) for batch in batches), tuple(batch.refused for batch in batches)
    )


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, (column, declaration) in _ADDED_COLUMNS.items():
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
