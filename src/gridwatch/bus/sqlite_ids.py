"""The ids each topic of the SQLite bus took, to refuse second copies of records.

A batch appended with ids keeps their 16-byte keys in its own row (column ``ids``, before the
payload in new files), so remembering them costs 16 bytes per record in the same write, and
forgetting them costs nothing when retention deletes the batch. ``topics.ids_from`` is the
offset below which a topic's ids are forgotten: the id window moves it on in
:meth:`TakenIds.forget`, and retention's start offset counts too.

Each process holds an :class:`IdIndex` per topic it appended to with ids, loaded at first use
and brought up to date inside the write transaction that checks a batch; the transaction holds
SQLite's write lock, so several processes appending to one file refuse each other's copies.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridwatch.bus.base import IdWindow
from gridwatch.bus.idindex import IdIndex
from gridwatch.bus.idkeys import KEY_BYTES, Fingerprints, fingerprints, key_at

Mask = npt.NDArray[np.bool_]

_STATE = "SELECT next_offset, MAX(start_offset, ids_from) FROM topics WHERE id = ?"
_TAKEN = (
    "SELECT base_offset, ids FROM batches WHERE topic_id = ? AND base_offset >= ? "
    "AND ids IS NOT NULL ORDER BY base_offset"
)
_FORGET_BY_TIME = """
UPDATE topics SET ids_from = COALESCE((
    SELECT MAX(base_offset + count) FROM batches
    WHERE topic_id = topics.id AND base_offset >= topics.ids_from AND appended_ms < ?
), ids_from)
"""
# The batches beyond the newest ``ids`` ids of all topics (a batch is kept while the ids newer
# than it are fewer: at least the newest ``ids`` are remembered), as the end offset per topic.
_BEYOND_COUNT = """
WITH live AS (
    SELECT b.topic_id, b.base_offset, b.count, b.appended_ms FROM topics t
    JOIN batches b ON b.topic_id = t.id AND b.base_offset >= MAX(t.ids_from, t.start_offset)
    WHERE b.ids IS NOT NULL
), ranked AS (
    SELECT topic_id, base_offset + count AS end_offset, SUM(count) OVER (
        ORDER BY appended_ms DESC, topic_id, base_offset DESC
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    ) AS newer FROM live
)
SELECT topic_id, MAX(end_offset) FROM ranked WHERE newer >= ? GROUP BY topic_id
"""


@dataclass
class TopicIds:
    """What this process knows of the ids one topic took."""

    index: IdIndex
    known: int
    """The index holds the ids of every batch below this offset."""


class TakenIds:
    """The per-topic id indexes of one bus object (used under its write lock)."""

    def __init__(self) -> None:
        self._topics: dict[int, TopicIds] = {}
        self._touched: set[int] = set()

    def loaded(self, topic_id: int) -> TopicIds | None:
        """The topic's ids if this process loaded them (possibly behind other processes)."""
        return self._topics.get(topic_id)

    def sync(self, conn: sqlite3.Connection, topic_id: int) -> TopicIds:
        """The topic's ids, up to date: call inside the write transaction."""
        next_offset, forgotten = conn.execute(_STATE, (topic_id,)).fetchone()
        topic = self._topics.get(topic_id)
        if topic is None:
            topic = self._topics[topic_id] = TopicIds(IdIndex(), 0)
        topic.index.forget_below(forgotten)
        if topic.known < next_offset:
            rows = conn.execute(_TAKEN, (topic_id, max(topic.known, forgotten))).fetchall()
            if rows:
                offsets = np.asarray([offset for offset, _ in rows], dtype=np.int64)
                sizes = [len(ids) // KEY_BYTES for _, ids in rows]
                prints = fingerprints(b"".join(ids for _, ids in rows))
                topic.index.extend(prints, np.repeat(offsets, sizes))
        topic.known = next_offset
        self._touched.add(topic_id)
        return topic

    def first_copies(
        self,
        conn: sqlite3.Connection,
        topic_id: int,
        topic: TopicIds,
        keys: bytes,
        prints: Fingerprints,
    ) -> Mask | None:
        """Which keys are new to the topic and first in the batch (``None``: all of them).

        ``topic`` must be up to date (:meth:`sync`).
        """
        probe = topic.index.probe(prints)
        if probe.clear:
            return None
        refused = np.zeros(len(prints), dtype=np.bool_)
        if len(probe.repeats):
            seen: set[bytes] = set()
            for position in range(len(prints)):
                key = key_at(keys, position)
                refused[position] = key in seen
                seen.add(key)
        if len(probe.positions):
            taken = _taken_keys(conn, topic_id, set(probe.offsets.tolist()))
            for position, offset in zip(
                probe.positions.tolist(), probe.offsets.tolist(), strict=True
            ):
                if key_at(keys, position) in taken[offset]:
                    refused[position] = True
        return None if not refused.any() else ~refused

    def took(self, topic: TopicIds, prints: Fingerprints, base_offset: int) -> None:
        """Remember that the batch at ``base_offset`` took these keys."""
        topic.index.add(prints, base_offset)
        topic.known = base_offset + len(prints)

    def committed(self) -> None:
        """The transaction that used :meth:`sync` committed."""
        self._touched.clear()

    def rolled_back(self) -> None:
        """The transaction that used :meth:`sync` rolled back: what it added is not taken."""
        for topic_id in self._touched:
            self._topics.pop(topic_id, None)
        self._touched.clear()

    def forget(self, conn: sqlite3.Connection, now_ms: int, window: IdWindow) -> None:
        """Forget the ids beyond the window (inside a write transaction)."""
        cutoff_ms = now_ms - int(window.seconds * 1000)
        conn.execute(_FORGET_BY_TIME, (cutoff_ms,))
        for topic_id, end_offset in conn.execute(_BEYOND_COUNT, (window.ids,)).fetchall():
            conn.execute(
                "UPDATE topics SET ids_from = MAX(ids_from, ?) WHERE id = ?",
                (end_offset, topic_id),
            )
        for topic_id, topic in self._topics.items():
            (_, forgotten) = conn.execute(_STATE, (topic_id,)).fetchone()
            topic.index.forget_below(forgotten)
        # Should this transaction roll back, these indexes would forget ids still remembered.
        self._touched.update(self._topics)


def _taken_keys(
    conn: sqlite3.Connection, topic_id: int, offsets: set[int]
) -> dict[int, set[bytes]]:
    """The keys of the topic's batches at these offsets."""
    marks = ",".join("?" * len(offsets))
    rows = conn.execute(
        f"SELECT base_offset, ids FROM batches WHERE topic_id = ? AND base_offset IN ({marks})",
        (topic_id, *offsets),
    )
    taken: dict[int, set[bytes]] = {offset: set() for offset in offsets}
    for base_offset, ids in rows:
        taken[base_offset] = {ids[i : i + KEY_BYTES] for i in range(0, len(ids), KEY_BYTES)}
    return taken
