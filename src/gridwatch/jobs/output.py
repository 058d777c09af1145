"""Output records of many bins at once: columns first, then envelope JSON lines in bulk.

Building one ``Record`` per bin (a data dict, a ``_measure_value`` call per measure, a sketch
walk per quantile, a hash and an encode) cost about 35 µs of Python per bin. Here each output
field is computed for all bins in one pass: quantiles are found for every sketch together with
numpy (one sort, one cumulative sum), and each line is the envelope prefix joined with the
msgspec encoding of its data. The bytes are exactly those of ``encode(Record(...))`` with
:func:`~gridwatch.jobs.bins.render`'s data, which the tests check.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from gridwatch.jobs.bins import Acc, AggSpec, BinKey, Measure
from gridwatch.jobs.sketch import Sketch, bucket_value
from gridwatch.jobs.windows import canonical_keys

_encode = msgspec.json.encode


class BinIds:
    """The ``_id`` of bins: a 128-bit hash of producer, type, bin length, start and keys.

    Equal to :func:`gridwatch.jobs.aggregate.bin_record`'s; the constant parts are hashed once.
    """

    def __init__(self, producer: str, type_: str, bin_ms: int) -> None:
        self._prefix = hashlib.blake2b(digest_size=16)
        for part in (producer.encode(), type_.encode(), str(bin_ms).encode()):
            self._prefix.update(len(part).to_bytes(8, "little"))
            self._prefix.update(part)

    def of(self, key: BinKey) -> str:
        """The id of one bin."""
        h = self._prefix.copy()
        start = str(key[0]).encode()
        keys = canonical_keys(key[1])
        h.update(len(start).to_bytes(8, "little"))
        h.update(start)
        h.update(len(keys).to_bytes(8, "little"))
        h.update(keys)
        return h.hexdigest()


def envelope_prefix(producer: str, type_: str) -> bytes:
    """The start of an ``agg`` envelope line, up to the timestamp."""
    return b'{"producer":' + _encode(producer) + b',"type":' + _encode(type_) + b',"timestamp":'


def bin_lines(
    prefix: bytes,
    ids: Sequence[str],
    spec: AggSpec,
    *,
    keys: Sequence[BinKey],
    accs: Sequence[Acc],
    extra: Mapping[str, Sequence[Any]],
) -> list[bytes]:
    """Envelope lines of bins: the rendered data of each, then the ``extra`` columns."""
    names, columns = render_columns(spec, keys, accs)
    names += list(extra)
    columns += list(extra.values())
    starts = [str(key[0]).encode() for key in keys]
    middle = b',"_id":"'
    tail = b'","type_prefix":"agg","data":'
    lines: list[bytes] = []
    append = lines.append
    for start, id_, row in zip(starts, ids, zip(*columns, strict=True), strict=True):
        data = _encode(dict(zip(names, row, strict=True)))
        append(b"".join((prefix, start, middle, id_.encode(), tail, data, b"}")))
    return lines


def render_columns(
    spec: AggSpec, keys: Sequence[BinKey], accs: Sequence[Acc]
) -> tuple[list[str], list[Sequence[Any]]]:
    """:func:`~gridwatch.jobs.bins.render` for many bins: field names and one column each."""
    scale = 10**spec.decimals
    bin_ms = spec.bin_ms
    starts = [key[0] for key in keys]
    names = ["window_start", "window_end", "window_s", *spec.keys, "count"]
    key_columns: list[Sequence[Any]] = list(zip(*(key[1] for key in keys), strict=True))
    if not key_columns:
        key_columns = [[] for _ in spec.keys]
    columns: list[Sequence[Any]] = [
        starts,
        [start + bin_ms for start in starts],
        [bin_ms // 1000] * len(keys),
        *key_columns,
        [acc.count for acc in accs],
    ]
    if spec.intervals:
        active = [acc.active_ms for acc in accs]
        names += ["ended", "active_time_ms", "active"]
        columns += [[acc.ended for acc in accs], active, [ms / bin_ms for ms in active]]
    ranks: dict[str, _Ranked] = {}
    for measure in spec.measures:
        names.append(measure.name)
        columns.append(_measure_column(measure, accs, scale, ranks))
    return names, columns


def _measure_column(
    measure: Measure, accs: Sequence[Acc], scale: int, ranks: dict[str, _Ranked]
) -> list[Any]:
    name = measure.field
    if measure.op == "sum":
        sums = [acc.sums.get(name, 0) for acc in accs]
        return sums if scale == 1 else [total / scale for total in sums]
    if measure.op == "mean":
        return [
            acc.sums.get(name, 0) / scale / acc.n[name] if acc.n.get(name, 0) else None
            for acc in accs
        ]
    if measure.op == "min":
        return [acc.mins.get(name) for acc in accs]
    if measure.op == "max":
        return [acc.maxs.get(name) for acc in accs]
    if name not in ranks:
        ranks[name] = _Ranked([acc.sketches.get(name) for acc in accs])
    values = ranks[name].quantile(measure.quantile or 0.0)
    # The sketch is accurate to 1 %; the exact extremes bound it.
    return [
        None
        if value is None
        else min(max(value, acc.mins.get(name, value)), acc.maxs.get(name, value))
        for value, acc in zip(values, accs, strict=True)
    ]


def quantiles(sketches: Sequence[Sketch | None], q: float) -> list[float | None]:
    """``Sketch.quantile(q)`` of every sketch (``None`` for missing or empty ones), at once."""
    return _Ranked(sketches).quantile(q)


class _Ranked:
    """The buckets of many sketches, sorted by value within each sketch, with running counts."""

    def __init__(self, sketches: Sequence[Sketch | None]) -> None:
        counts = [s.counts if s is not None else {} for s in sketches]
        self.sizes = np.fromiter(map(len, counts), np.int64, len(counts))
        size = int(self.sizes.sum())
        index = np.fromiter(itertools.chain.from_iterable(counts), np.int64, size)
        count = np.fromiter(
            itertools.chain.from_iterable(c.values() for c in counts), np.int64, size
        )
        cell = np.repeat(np.arange(len(counts)), self.sizes)
        # Bucket indexes sort in the order of their values (negatives, zero, positives).
        order = np.lexsort((index, cell))
        self.index, self.cell = index[order], cell[order]
        self.first = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(self.sizes[:-1], out=self.first[1:])
        running = np.cumsum(count[order])
        before = np.zeros(len(counts), dtype=np.int64)
        inner = (self.sizes > 0) & (self.first > 0)
        before[inner] = running[self.first[inner] - 1]
        self.seen = running - before[self.cell]
        self.totals = np.zeros(len(counts), dtype=np.int64)
        has = self.sizes > 0
        self.totals[has] = running[self.first[has] + self.sizes[has] - 1] - before[has]
        self.values = {i: bucket_value(i) for i in np.unique(index).tolist()}

    def quantile(self, q: float) -> list[float | None]:
        """The value at rank ``q * (n - 1)`` of each sketch, as :meth:`Sketch.quantile`."""
        if len(self.index) == 0:
            return [None] * len(self.sizes)
        rank = q * (self.totals - 1).astype(np.float64)
        # The first bucket of each sketch whose running count exceeds the rank.
        passed = np.bincount(
            self.cell, weights=self.seen <= rank[self.cell], minlength=len(self.sizes)
        ).astype(np.int64)
        pick = self.first + np.minimum(passed, np.maximum(self.sizes - 1, 0))
        picked = self.index[np.minimum(pick, len(self.index) - 1)].tolist()
        values = self.values
        return [
            values[i] if total > 0 else None
            for i, total in zip(picked, self.totals.tolist(), strict=True)
        ]
