"""Rows to records, a page at a time and a column at a time.

A record's ``_id`` is a 128-bit hash of (producer, type, key, commit value): one row version is
one record wherever it flows, however often it is read. Its timestamp is the commit value when
that is a time (so a replay lands in the same day folder), else the time of reading.
"""

from __future__ import annotations

import gc
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from gridwatch.record import Record
from gridwatch.sources.sql.config import SqlIncrementalConfig
from gridwatch.sources.sql.cursor import Key
from gridwatch.sources.sql.database import Fetched
from gridwatch.sources.sql.values import (
    Kind,
    TimeAxis,
    convert_column,
    converter_for,
    first_not_null,
    token,
)


@dataclass
class Converted:
    """A page as records, with each row's commit value and key (as the database gave them)."""

    records: list[Record]
    values: list[Any]
    keys: list[Key]


class RowConverter:
    """Turns pages of rows into envelope records."""

    def __init__(self, config: SqlIncrementalConfig, axis: TimeAxis) -> None:
        self.config = config
        self.axis = axis
        self._hash_base = hashlib.blake2b(digest_size=16)
        for part in (config.producer.encode(), config.record_type.encode()):
            self._hash_base.update(len(part).to_bytes(8, "little") + part)
        self._layout: tuple[tuple[str, ...], int, list[int]] | None = None

    def _columns(self, names: list[str]) -> tuple[tuple[str, ...], int, list[int]]:
        """Output names, the commit column's index and the key columns' indexes."""
        key = tuple(names)
        if self._layout is None or self._layout[0] != key:
            lower = [n.lower() for n in names]
            commit = lower.index(self.config.commit_column.lower())
            keys = [lower.index(k.lower()) for k in self.config.key_columns]
            self._layout = (key, commit, keys)
        out = tuple(n.lower() for n in names) if self.config.lowercase_columns else key
        return out, self._layout[1], self._layout[2]

    def last_cursor(self, page: Fetched) -> tuple[Any, ...]:
        """The ``(commit value, *key)`` of a page's last row."""
        _, commit, keys = self._columns(page.names)
        last = page.rows[-1]
        return (last[commit], *(last[i] for i in keys))

    def convert(self, page: Fetched) -> Converted:
        """Records for every row of a page, in order."""
        # Tens of thousands of new containers would trigger the cyclic GC many times over;
        # none of them can be part of a cycle.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._convert(page)
        finally:
            if enabled:
                gc.enable()

    def _convert(self, page: Fetched) -> Converted:
        cfg = self.config
        names, commit, key_indexes = self._columns(page.names)
        columns = list(zip(*page.rows, strict=True)) if page.rows else []
        values = list(columns[commit]) if columns else []
        if len(key_indexes) == 1:
            keys: list[Key] = [(k,) for k in columns[key_indexes[0]]] if columns else []
        else:
            keys = list(zip(*(columns[i] for i in key_indexes), strict=True)) if columns else []
        converted = []
        for index, column in enumerate(columns):
            sample = first_not_null(column)
            if index == commit and isinstance(sample, str) and self.axis.kind is Kind.TEXT_TIME:
                convert = self.axis.text_time_converter(cfg.time_format)
            else:
                scale = page.scales[index] if page.scales else None
                convert = converter_for(
                    sample, self.axis, cfg.time_format, cfg.decimal_format, scale
                )
            converted.append(convert_column(column, convert))
        known: list[int | None] = [None] * len(values)
        if cfg.time_format == "epoch_ms" and self.axis.kind.is_time and columns:
            known = [v if isinstance(v, int) else None for v in converted[commit]]
        stamps = self._timestamps(values, known)
        ids = self._ids(keys, values)
        records = [
            Record(
                producer=cfg.producer,
                type=cfg.record_type,
                timestamp=stamp,
                id=id_,
                type_prefix=cfg.type_prefix,
                version=cfg.version,
                data=dict(zip(names, row, strict=True)),
            )
            for stamp, id_, row in zip(stamps, ids, zip(*converted, strict=True), strict=True)
        ]
        return Converted(records, values, keys)

    def _ids(self, keys: list[Key], values: list[Any]) -> list[str]:
        """128-bit ids of (producer, type, key, commit value): one per row version."""
        base = self._hash_base
        single = len(self.config.key_columns) == 1
        ids = []
        for key, value in zip(keys, values, strict=True):
            key_bytes = token(key[0]) if single else b"\x1f".join(token(k) for k in key)
            h = base.copy()
            h.update(len(key_bytes).to_bytes(8, "little") + key_bytes + token(value))
            ids.append(h.hexdigest())
        return ids

    def _timestamps(self, values: list[Any], known: list[int | None]) -> list[int]:
        """Each row's envelope timestamp (UTC ms): its commit value, or now."""
        if all(stamp is not None for stamp in known):
            return known  # type: ignore[return-value]
        now_ms = round(time.time() * 1000)
        to_epoch = self.axis.to_epoch
        stamps = []
        for value, stamp in zip(values, known, strict=True):
            if stamp is not None:
                stamps.append(stamp)
                continue
            epoch = to_epoch(value)
            stamps.append(now_ms if epoch is None else round(epoch * 1000))
        return stamps
