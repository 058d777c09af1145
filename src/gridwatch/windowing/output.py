"""Output records of many bins at once: columns first, then envelope JSON lines in bulk.

Building one ``Record`` per bin (a data dict, a ``_measure_value`` call per measure, a sketch
walk per quantile, a hash and an encode) cost about 35 µs of Python per bin. Here each output
field is computed for all bins in one pass: quantiles are found for every sketch together with
numpy (one sort, one cumulative sum), and each line is the envelope prefix joined with the
msgspec encoding of its data. The bytes are exactly those of ``encode(Record(...))`` with
:func:`~gridwatch.windowing.bins.render`'s data, which the tests check.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from gridwatch.windowing.bins import AggSpec, Measure
from gridwatch.windowing.cells import Cells, Triples
from gridwatch.windowing.sketch import Sketch, bucket_value
from gridwatch.windowing.windows import canonical_keys

_encode = msgspec.json.encode


class BinIds:
    """The ``_id`` of bins: a 128-bit hash of producer, type, bin length, start and keys.

    Equal to :func:`gridwatch.jobs.aggregate.job.bin_record`'s; the constant parts are hashed once.
    """

    def __init__(self, producer: str, type_: str, bin_ms: int) -> None:
        self._prefix = hashlib.blake2b(digest_size=16)
        for part in (producer.encode(), type_.encode(), str(bin_ms).encode()):
            self._prefix.update(len(part).to_bytes(8, "little"))
            self._prefix.update(part)

    def of_cells(self, cells: Cells) -> list[str]:
        """The ids of many cells (each group's keys encoded once)."""
        group = cells.group.tolist()
        keys = {g: canonical_keys(cells.groups[g]) for g in set(group)}
        return [
            self._of(str(s).encode(), keys[g])
            for s, g in zip(cells.start.tolist(), group, strict=True)
        ]

    def _of(self, start: bytes, keys: bytes) -> str:
        h = self._prefix.copy()
        h.update(len(start).to_bytes(8, "little") + start + len(keys).to_bytes(8, "little") + keys)
        return h.hexdigest()


def envelope_prefix(producer: str, type_: str) -> bytes:
    """The start of an ``agg`` envelope line, up to the timestamp."""
    return b'{"producer":' + _encode(producer) + b',"type":' + _encode(type_) + b',"timestamp":'


def bin_lines(
    prefix: bytes,
    ids: Sequence[str],
    spec: AggSpec,
    cells: Cells,
    extra: Mapping[str, Sequence[Any]],
) -> list[bytes]:
    """Envelope lines of cells: the rendered data of each, then the ``extra`` columns."""
    names, columns = render_columns(spec, cells)
    names += list(extra)
    columns += list(extra.values())
    starts = [str(start).encode() for start in columns[0]]
    middle = b',"_id":"'
    tail = b'","type_prefix":"agg","data":'
    lines: list[bytes] = []
    append = lines.append
    for start, id_, row in zip(starts, ids, zip(*columns, strict=True), strict=True):
        data = _encode(dict(zip(names, row, strict=True)))
        append(b"".join((prefix, start, middle, id_.encode(), tail, data, b"}")))
    return lines


def render_columns(spec: AggSpec, cells: Cells) -> tuple[list[str], list[Sequence[Any]]]:
    """:func:`~gridwatch.windowing.bins.render` for many cells: field names and one column each."""
    scale = 10**spec.decimals
    bin_ms = spec.bin_ms
    starts = cells.start.tolist()
    names = ["window_start", "window_end", "window_s", *spec.keys, "count"]
    groups = [cells.groups[g] for g in cells.group.tolist()]
    key_columns: list[Sequence[Any]] = list(zip(*groups, strict=True))
    if not key_columns:
        key_columns = [[] for _ in spec.keys]
    columns: list[Sequence[Any]] = [
        starts,
        (cells.start + bin_ms).tolist(),
        [bin_ms // 1000] * len(starts),
        *key_columns,
        cells.count.tolist(),
    ]
    if spec.intervals:
        names += ["ended", "active_time_ms", "active"]
        columns += [cells.ended.tolist(), cells.active.tolist(), (cells.active / bin_ms).tolist()]
    ranks: dict[str, _Ranked] = {}
    for measure in spec.measures:
        names.append(measure.name)
        columns.append(_measure_column(measure, cells, scale, ranks))
    return names, columns


def _measure_column(
    measure: Measure, cells: Cells, scale: int, ranks: dict[str, _Ranked]
) -> list[Any]:
    name = measure.field
    if measure.op == "sum":
        sums = cells.sums[name].tolist()
        return sums if scale == 1 else [total / scale for total in sums]
    if measure.op == "mean":
        n = cells.n[name].tolist()
        return [
            total / scale / count if count else None
            for total, count in zip(cells.sums[name].tolist(), n, strict=True)
        ]
    if measure.op in ("min", "max"):
        return _optional((cells.mins if measure.op == "min" else cells.maxs)[name])
    if name not in ranks:
        ranks[name] = _Ranked(cells.sketches[name], len(cells))
    values = ranks[name].quantile(measure.quantile or 0.0)
    # The sketch is accurate to 1 %; the exact extremes bound it.
    return [
        None if value is None else min(max(value, low), high)
        for value, low, high in zip(
            values, cells.mins[name].tolist(), cells.maxs[name].tolist(), strict=True
        )
    ]


def _optional(values: npt.NDArray[np.float64]) -> list[float | None]:
    """Floats with NaN (no value) as None."""
    return [None if math.isnan(v) else v for v in values.tolist()]


def quantiles(sketches: Sequence[Sketch | None], q: float) -> list[float | None]:
    """``Sketch.quantile(q)`` of every sketch (``None`` for missing or empty ones), at once."""
    triples = [
        (cell, bucket, count)
        for cell, sketch in enumerate(sketches)
        if sketch is not None
        for bucket, count in sorted(sketch.counts.items())
    ]
    cell, bucket, count = (
        (np.array(c, dtype=np.int64) for c in zip(*triples, strict=True))
        if triples
        else (np.zeros(0, np.int64),) * 3
    )
    return _Ranked(Triples(cell, bucket, count), len(sketches)).quantile(q)


class _Ranked:
    """The buckets of many sketches, sorted by value within each sketch, with running counts."""

    def __init__(self, triples: Triples, cells: int) -> None:
        # Triples are sorted by cell, then bucket; bucket indexes sort in the order of their
        # values (negatives, zero, positives).
        self.index, self.cell = triples.bucket, triples.cell
        self.sizes = np.bincount(self.cell, minlength=cells).astype(np.int64)
        self.first = np.zeros(cells, dtype=np.int64)
        np.cumsum(self.sizes[:-1], out=self.first[1:])
        running = np.cumsum(triples.count)
        before = np.zeros(cells, dtype=np.int64)
        inner = (self.sizes > 0) & (self.first > 0)
        before[inner] = running[self.first[inner] - 1]
        self.seen = running - before[self.cell]
        self.totals = np.zeros(cells, dtype=np.int64)
        has = self.sizes > 0
        self.totals[has] = running[self.first[has] + self.sizes[has] - 1] - before[has]
        self.values = {i: bucket_value(i) for i in np.unique(self.index).tolist()}

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
