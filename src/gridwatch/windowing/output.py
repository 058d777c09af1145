"""Output records of many bins at once: columns first, then envelope JSON lines in bulk.

Building one ``Record`` per bin (a data dict, a ``_measure_value`` call per measure, a sketch
walk per quantile, a hash and an encode) cost about 35 µs of Python per bin. Here each output
field is computed for all bins in one pass: quantiles are found for every sketch together with
numpy (one sort, one cumulative sum), and the lines are encoded in one loop. The ``aggregate``
and ``rollup`` jobs write their bins with :class:`BinWriter`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gridwatch.gcpause import gc_paused
from gridwatch.record import PartsHash, encode_envelopes, topic_name
from gridwatch.windowing.bins import AggSpec, Measure
from gridwatch.windowing.cells import Cells, Triples
from gridwatch.windowing.sketch import bucket_value
from gridwatch.windowing.watermark import canonical_keys


class BinIds:
    """The ``_id`` of bins: a 128-bit hash of producer, type, bin length, start and keys
    (:func:`~gridwatch.record.hash128` of them; the constant parts are hashed once)."""

    def __init__(self, producer: str, type_: str, bin_ms: int) -> None:
        self._hash = PartsHash(producer.encode(), type_.encode(), str(bin_ms).encode()).hexdigest

    def of_cells(self, cells: Cells) -> list[str]:
        """The ids of many cells (each group's keys encoded once)."""
        group = cells.group.tolist()
        keys = {g: canonical_keys(cells.groups[g]) for g in set(group)}
        of = self._hash
        return [
            of(str(s).encode(), keys[g]) for s, g in zip(cells.start.tolist(), group, strict=True)
        ]


class BinWriter:
    """The output records of a job's bins: ``agg`` envelopes whose data is the rendered bin,
    its revision and, with ``with_state``, its mergeable state (``_acc``, for a rollup)."""

    def __init__(self, producer: str, type_: str, bin_ms: int, with_state: bool) -> None:
        self.producer = producer
        self.type = type_
        self.topic = topic_name(producer, "agg", type_)
        self.ids = BinIds(producer, type_, bin_ms)
        self.with_state = with_state

    def lines(self, spec: AggSpec, cells: Cells, revisions: Sequence[int]) -> list[bytes]:
        """The envelope lines of the cells, in order."""
        with gc_paused():  # many small lists and dicts, none in a cycle
            names, columns = render_columns(spec, cells)
            names.append("revision")
            columns.append(revisions)
            if self.with_state:
                names.append("_acc")
                columns.append(cells.acc_json())
            data = (dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True))
            rows = zip(columns[0], self.ids.of_cells(cells), data, strict=True)
            return encode_envelopes(self.producer, self.type, "agg", None, rows)


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
    ranks: dict[str, Ranked] = {}
    for measure in spec.measures:
        names.append(measure.name)
        columns.append(_measure_column(measure, cells, scale, ranks))
    return names, columns


def _measure_column(
    measure: Measure, cells: Cells, scale: int, ranks: dict[str, Ranked]
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
        ranks[name] = Ranked(cells.sketches[name], len(cells))
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


class Ranked:
    """The buckets of many sketches (cells), sorted by value within each, with running counts."""

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
        """The value at rank ``q * (n - 1)`` of each sketch: that of the first bucket (in the
        order of their values) whose running count exceeds it; ``None`` for an empty one."""
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
