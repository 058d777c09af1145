"""Rows to records, a page at a time and a column at a time.

A record's ``_id`` is a 128-bit hash of (producer, type, key, commit value): one row version is
one record wherever it flows, however often it is read. Its timestamp is the commit value when
that is a time (so a replay lands in the same day folder), else the time of reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import starmap
from typing import Any

import msgspec

from gridwatch.clock import SYSTEM_CLOCK, Clock
from gridwatch.gcpause import gc_paused
from gridwatch.record import EncodedRecords, PartsHash, Record, encode_envelopes, topic_name
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig
from gridwatch.sources.sql_incremental.cursor import Key
from gridwatch.sources.sql_incremental.database import Fetched
from gridwatch.sources.sql_incremental.values import (
    Kind,
    TimeAxis,
    convert_column,
    converter_for,
    first_not_null,
    token,
)


@dataclass
class Converted:
    """A page as envelope JSON lines, with each row's commit value and key (as the database
    gave them), and the converted columns from which :class:`Record` objects are built only
    when something downstream reads them."""

    topic: str
    lines: list[bytes]
    values: list[Any]
    key_columns: list[Sequence[Any]]
    names: tuple[str, ...]
    stamps: list[int]
    ids: list[str]
    columns: list[list[Any]]
    config: SqlIncrementalConfig

    def __len__(self) -> int:
        return len(self.lines)

    def keys(self) -> Iterator[Key]:
        """Each row's key, in order (made on the fly: a page of tuples would keep the cyclic
        garbage collector busy)."""
        return zip(*self.key_columns, strict=True)

    def versions(self) -> Iterator[tuple[Any, Key]]:
        """Each row's ``(commit value, key)``, in order."""
        return zip(self.values, self.keys(), strict=True)

    def key(self, row: int) -> Key:
        """One row's key."""
        return tuple(column[row] for column in self.key_columns)

    def records(self, rows: list[int] | None = None) -> EncodedRecords:
        """The page's records (or those of ``rows``), as lines ready for the bus."""
        lines = self.lines if rows is None else [self.lines[i] for i in rows]
        return EncodedRecords(self.topic, lines, partial(self.build, rows))

    def build(self, rows: list[int] | None = None) -> list[Record]:
        """:class:`Record` objects of every row (or of ``rows``), equal to what the lines hold."""
        cfg, names = self.config, self.names
        data = list(zip(*self.columns, strict=True))
        chosen = range(len(self.lines)) if rows is None else rows
        return [
            Record(
                producer=cfg.producer,
                type=cfg.record_type,
                timestamp=self.stamps[i],
                id=self.ids[i],
                type_prefix=cfg.type_prefix,
                version=cfg.version,
                data=dict(zip(names, data[i], strict=True)),
            )
            for i in chosen
        ]


class RowConverter:
    """Turns pages of rows into envelope records."""

    def __init__(
        self, config: SqlIncrementalConfig, axis: TimeAxis, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.config = config
        self.axis = axis
        self.clock = clock
        self._ids_of = PartsHash(config.producer.encode(), config.record_type.encode()).hexdigest
        self._layout: tuple[tuple[str, ...], int, list[int]] | None = None
        self._row_struct: tuple[tuple[str, ...], type[msgspec.Struct] | None] | None = None

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
        last = page.last_row
        assert last is not None, "an empty page has no last row"
        return (last[commit], *(last[i] for i in keys))

    def convert(self, page: Fetched) -> Converted:
        """Envelope lines for every row of a page, in order."""
        # The page's row tuples are made and freed in here; nothing made here is in a cycle.
        with gc_paused():
            return self._convert(page)

    def _convert(self, page: Fetched) -> Converted:
        cfg = self.config
        names, commit, key_indexes = self._columns(page.names)
        columns = list(zip(*page.take_rows(), strict=True)) if len(page) else []
        values = list(columns[commit]) if columns else []
        key_columns: list[Sequence[Any]] = [columns[i] for i in key_indexes] if columns else []
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
        ids = self._ids(key_columns, values)
        lines = self._lines(names, stamps, ids, converted)
        topic = topic_name(cfg.producer, cfg.type_prefix, cfg.record_type)
        return Converted(topic, lines, values, key_columns, names, stamps, ids, converted, cfg)

    def _lines(
        self, names: tuple[str, ...], stamps: list[int], ids: list[str], columns: list[list[Any]]
    ) -> list[bytes]:
        """Envelope JSON lines, encoded straight from the columns (a struct per row, no dict)."""
        cfg = self.config
        row_type = self._row_type(names)
        rows = zip(*columns, strict=True)
        if row_type is None:
            data: Iterable[Any] = (dict(zip(names, row, strict=True)) for row in rows)
        else:
            data = starmap(row_type, rows)
        rows_out = zip(stamps, ids, data, strict=True)
        return encode_envelopes(
            cfg.producer, cfg.record_type, cfg.type_prefix, cfg.version, rows_out
        )

    def _row_type(self, names: tuple[str, ...]) -> type[msgspec.Struct] | None:
        """A struct that encodes a row as the JSON object ``{name: value, ...}`` in order
        (``None`` when names repeat: a dict keeps the last value, as before)."""
        if self._row_struct is None or self._row_struct[0] != names:
            if len(set(names)) == len(names):
                fields = [f"c{i}" for i in range(len(names))]
                struct: type[msgspec.Struct] | None = msgspec.defstruct(
                    "Row",
                    [(f, Any) for f in fields],
                    rename=dict(zip(fields, names, strict=True)),
                    gc=False,
                )
            else:
                struct = None
            self._row_struct = (names, struct)
        return self._row_struct[1]

    def _ids(self, key_columns: list[Sequence[Any]], values: list[Any]) -> list[str]:
        """128-bit ids of (producer, type, key, commit value): one per row version."""
        if len(key_columns) == 1:
            key_tokens = [token(k) for k in key_columns[0]]
        else:
            key_tokens = [b"\x1f".join(map(token, key)) for key in zip(*key_columns, strict=True)]
        ids = []
        id_of = self._ids_of
        value_tokens: dict[Any, bytes] = {}  # rows share commit values: format each once
        for key_bytes, value in zip(key_tokens, values, strict=True):
            value_token = value_tokens.get(value)
            if value_token is None:
                value_token = value_tokens[value] = token(value)
            # The key's length frames it; the value's token ends the hashed bytes.
            ids.append(id_of(key_bytes, tail=value_token))
        return ids

    def _timestamps(self, values: list[Any], known: list[int | None]) -> list[int]:
        """Each row's envelope timestamp (UTC ms): its commit value, or now."""
        if all(stamp is not None for stamp in known):
            return known  # type: ignore[return-value]
        now_ms = round(self.clock.time() * 1000)
        to_epoch = self.axis.to_epoch
        stamps = []
        for value, stamp in zip(values, known, strict=True):
            if stamp is not None:
                stamps.append(stamp)
                continue
            epoch = to_epoch(value)
            stamps.append(now_ms if epoch is None else round(epoch * 1000))
        return stamps
