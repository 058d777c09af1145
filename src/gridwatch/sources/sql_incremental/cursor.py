"""The read position: the last row emitted, and the rows emitted inside the rescan window.

``value`` and ``key`` are the commit value and key of the last row emitted by a forward read
(rows are read in ``(commit value, key)`` order, so the cursor never skips a tie and never
loops). ``seen`` remembers, per commit value, which keys were emitted with it, for rows that a
rescan may read again; ``scanned_at`` is the wall-clock start of the round that moved the
cursor, which bounds how far back a row can have been missed. All of it is plain JSON, stored
by the bus in the same transaction as the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gridwatch.sources.sql_incremental.values import decode_value, encode_value

Key = tuple[Any, ...]


@dataclass
class Cursor:
    """Where reading resumes, and what a rescan must not emit twice."""

    value: Any = None
    key: Key | None = None
    seen: dict[Any, set[Key]] = field(default_factory=dict)
    scanned_at: float | None = None

    def was_emitted(self, value: Any, key: Key) -> bool:
        """Whether the row version ``(key, value)`` was emitted already."""
        keys = self.seen.get(value)
        return keys is not None and key in keys

    def remember(self, value: Any, key: Key) -> None:
        """Note that a row version was emitted."""
        keys = self.seen.get(value)
        if keys is None:
            self.seen[value] = {key}
        else:
            keys.add(key)

    def forget_before(self, bound: Any) -> None:
        """Drop what no rescan can read again: versions with a commit value below ``bound``."""
        for value in [v for v in self.seen if v < bound]:
            del self.seen[value]

    @property
    def seen_count(self) -> int:
        """How many row versions are remembered."""
        return sum(len(keys) for keys in self.seen.values())

    def to_json(self) -> dict[str, Any]:
        """The cursor as plain JSON for the bus."""
        return {
            "value": encode_value(self.value),
            "key": None if self.key is None else [encode_value(k) for k in self.key],
            "scanned_at": self.scanned_at,
            "seen": [
                [encode_value(value), [[encode_value(k) for k in key] for key in keys]]
                for value, keys in self.seen.items()
            ],
        }

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> Cursor:
        """The cursor that :meth:`to_json` stored."""
        key = state.get("key")
        cursor = cls(
            value=decode_value(state.get("value")),
            key=None if key is None else tuple(decode_value(k) for k in key),
            scanned_at=state.get("scanned_at"),
        )
        for value, keys in state.get("seen", []):
            cursor.seen[decode_value(value)] = {tuple(decode_value(k) for k in key) for key in keys}
        return cursor
