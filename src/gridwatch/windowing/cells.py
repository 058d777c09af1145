"""Accumulators of many (bin, group) cells as columns, and how a batch of records fills them.

A batch becomes :class:`Cells`: one row per cell it touches, with counts, exact sums, min and
max as arrays and the quantile sketches as (cell, bucket, count) :class:`Triples` sorted by
cell and bucket. They are built with a few numpy sorts and reductions, without a Python object
per cell; the ``aggregate`` job merges them into its :class:`~gridwatch.windowing.table.BinTable`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridwatch.windowing.bins import AggSpec, BinKey, Columns
from gridwatch.windowing.sketch import bucket_indexes
from gridwatch.windowing.spread import Pieces, apportion, spread
from gridwatch.windowing.state import State

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_SPAN = 1 << 17
"""Bucket indexes lie well inside ±_SPAN / 2 (about ±36,000 covers every finite float)."""


@dataclass
class Triples:
    """Sketch contents of many cells: ``count`` values in ``bucket`` of ``cell``."""

    cell: I64
    bucket: I64
    count: I64

    @staticmethod
    def empty() -> Triples:
        return Triples(*(np.zeros(0, dtype=np.int64) for _ in range(3)))

    def combined(self) -> Triples:
        """Sorted by cell and bucket, equal (cell, bucket) pairs added up."""
        key = self.cell * _SPAN + (self.bucket + _SPAN // 2)
        order = np.argsort(key, kind="stable")
        key = key[order]
        bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
        counts = np.add.reduceat(self.count[order], bounds) if len(key) else key
        cell, bucket = np.divmod(key[bounds], _SPAN)
        return Triples(cell, bucket - _SPAN // 2, counts.astype(np.int64))

    def drop(self, cells: npt.NDArray[np.bool_]) -> Triples:
        """Without the triples of the cells flagged in ``cells`` (numbering unchanged)."""
        keep = ~cells[self.cell]
        return Triples(self.cell[keep], self.bucket[keep], self.count[keep])

    def where(self, rows: npt.NDArray[np.intp], size: int) -> Triples:
        """The triples of ``rows`` (cells numbered 0..size-1), renumbered in ``rows`` order."""
        return Triples.select([self], rows, size)

    @staticmethod
    def select(parts: Sequence[Triples], rows: npt.NDArray[np.intp], size: int) -> Triples:
        """The triples of ``rows`` in several parts, renumbered in ``rows`` order, combined."""
        position = np.full(size, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        picked = []
        for part in parts:
            cell = position[part.cell]
            keep = cell >= 0
            picked.append(Triples(cell[keep], part.bucket[keep], part.count[keep]))
        return Triples.concat(picked).combined()

    @staticmethod
    def concat(parts: Sequence[Triples]) -> Triples:
        return Triples(
            np.concatenate([p.cell for p in parts]),
            np.concatenate([p.bucket for p in parts]),
            np.concatenate([p.count for p in parts]),
        )


@dataclass
class Cells:
    """Accumulators of (bin start, group) cells; ``group`` indexes ``groups`` (key tuples).

    ``n`` counts the values in each sum (0: no value, the sum is absent); ``mins`` and
    ``maxs`` are NaN where a cell has no value.
    """

    start: I64
    group: I64
    groups: list[tuple[Any, ...]]
    count: I64
    active: I64
    ended: I64
    sums: dict[str, I64]
    n: dict[str, I64]
    mins: dict[str, F64]
    maxs: dict[str, F64]
    sketches: dict[str, Triples]

    def __len__(self) -> int:
        return len(self.start)

    def take(self, index: npt.NDArray[np.intp]) -> Cells:
        """Only the given cells, in that order."""
        return Cells(
            self.start[index],
            self.group[index],
            self.groups,
            self.count[index],
            self.active[index],
            self.ended[index],
            {name: values[index] for name, values in self.sums.items()},
            {name: values[index] for name, values in self.n.items()},
            {name: values[index] for name, values in self.mins.items()},
            {name: values[index] for name, values in self.maxs.items()},
            {name: t.where(index, len(self)) for name, t in self.sketches.items()},
        )

    def merged_by(self, labels: I64) -> tuple[Cells, I64]:
        """One cell per distinct label, merging the cells that share one, and those labels
        (sorted); ``start`` and ``group`` are each label's first cell's."""
        order = np.argsort(labels, kind="stable")
        ordered = labels[order]
        bounds = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        merged = np.empty(len(labels), dtype=np.int64)
        merged[order] = np.repeat(np.arange(len(bounds)), np.diff(np.r_[bounds, len(labels)]))
        first, cells = order[bounds], _Reducer(order, bounds)
        return Cells(
            self.start[first],
            self.group[first],
            self.groups,
            cells.add(self.count),
            cells.add(self.active),
            cells.add(self.ended),
            {name: cells.add_exact(values, name) for name, values in self.sums.items()},
            {name: cells.add(values) for name, values in self.n.items()},
            {name: cells.fmin(values) for name, values in self.mins.items()},
            {name: cells.fmax(values) for name, values in self.maxs.items()},
            {
                name: Triples(merged[t.cell], t.bucket, t.count).combined()
                for name, t in self.sketches.items()
            },
        ), ordered[bounds]

    def bin_keys(self) -> list[BinKey]:
        """The (bin start, key tuple) of each cell."""
        groups = self.groups
        return [
            (s, groups[g]) for s, g in zip(self.start.tolist(), self.group.tolist(), strict=True)
        ]

    def acc_json(self) -> list[list[Any]]:
        """Each cell's mergeable state in its JSON form (see :mod:`.state`)."""
        sums, ns = _named(self.sums), _named(self.n)
        present = [n > 0 for n in self.n.values()]
        lows, highs = _named(self.mins), _named(self.maxs)
        ranged = [~np.isnan(low) for low in self.mins.values()]
        pairs = [(name, _pairs(triples, len(self))) for name, triples in self.sketches.items()]
        columns = [
            self.count.tolist(),
            self.active.tolist(),
            self.ended.tolist(),
            _dicts(sums, present, len(self)),
            _dicts(ns, present, len(self)),
            _dicts(lows, ranged, len(self)),
            _dicts(highs, ranged, len(self)),
            _dicts(
                pairs,
                [np.diff(_edges(t, len(self))) > 0 for t in self.sketches.values()],
                len(self),
            ),
        ]
        return [list(row) for row in zip(*columns, strict=True)]

    @staticmethod
    def from_states(spec: AggSpec, keys: Sequence[BinKey], states: Sequence[State]) -> Cells:
        """Cells holding states in their JSON form (see :mod:`.state`), one per key; a key may
        repeat. Only the fields ``spec`` keeps are read."""
        groups = list(dict.fromkeys(key[1] for key in keys))
        group_of = {group: i for i, group in enumerate(groups)}
        sketches: dict[str, Triples] = {}
        for name in spec.sketched:
            triples = [
                (cell, bucket, count)
                for cell, state in enumerate(states)
                for bucket, count in state[7].get(name, ())
            ]
            cell, bucket, count = zip(*triples, strict=True) if triples else ((), (), ())
            sketches[name] = Triples(_ints(cell), _ints(bucket), _ints(count)).combined()
        nan = float("nan")
        return Cells(
            _ints([key[0] for key in keys]),
            _ints([group_of[key[1]] for key in keys]),
            groups,
            _ints([state[0] for state in states]),
            _ints([state[1] for state in states]),
            _ints([state[2] for state in states]),
            {name: _ints([state[3].get(name, 0) for state in states]) for name in spec.summed},
            {name: _ints([state[4].get(name, 0) for state in states]) for name in spec.summed},
            {name: _floats([s[5].get(name, nan) for s in states]) for name in spec.ranged},
            {name: _floats([s[6].get(name, nan) for s in states]) for name in spec.ranged},
            sketches,
        )


def _ints(items: Sequence[int]) -> I64:
    return np.array(items, dtype=np.int64).reshape(len(items))


def _floats(items: Sequence[float]) -> F64:
    return np.array(items, dtype=np.float64).reshape(len(items))


def _named(columns: Mapping[str, npt.NDArray[Any]]) -> list[tuple[str, list[Any]]]:
    return [(name, values.tolist()) for name, values in columns.items()]


def _dicts(
    named: Sequence[tuple[str, Sequence[Any]]], present: Sequence[npt.NDArray[np.bool_]], size: int
) -> list[dict[str, Any]]:
    """One dict per cell holding, for each name, its value where ``present``."""
    if not named:
        return [{} for _ in range(size)]
    if len(named) == 1:
        (name, values), (mask,) = named[0], present
        return [{name: v} if p else {} for v, p in zip(values, mask.tolist(), strict=True)]
    names = [name for name, _ in named]
    columns = zip(*(v for _, v in named), strict=True)
    rows = zip(columns, zip(*(m.tolist() for m in present), strict=True), strict=True)
    return [
        {n: v for n, v, p in zip(names, values, flags, strict=True) if p} for values, flags in rows
    ]


def _edges(triples: Triples, cells: int) -> npt.NDArray[np.intp]:
    """Where each cell's triples begin (and, last, where they end)."""
    return np.searchsorted(triples.cell, np.arange(cells + 1))


def _pairs(triples: Triples, cells: int) -> list[list[tuple[int, int]]]:
    """Each cell's sketch as ``[(bucket, count), ...]`` (triples are sorted by cell, bucket)."""
    pairs = list(zip(triples.bucket.tolist(), triples.count.tolist(), strict=True))
    edges = _edges(triples, cells).tolist()
    return [pairs[lo:hi] for lo, hi in itertools.pairwise(edges)]


def add_exact(total: I64, addend: I64, name: str) -> I64:
    """``total + addend`` element-wise, refusing to wrap around silently."""
    result = total + addend
    wrapped = ((total ^ result) & (addend ^ result)) < 0
    if wrapped.any():
        raise _overflow(name)
    return result


def _overflow(name: str) -> OverflowError:
    return OverflowError(
        f"the sum of {name!r} in a bin exceeds 64-bit fixed point (lower `decimals`)"
    )


def empty_cells(spec: AggSpec) -> Cells:
    """No cells."""
    none = np.zeros(0, dtype=np.int64)
    nan = np.zeros(0, dtype=np.float64)
    return Cells(
        none,
        none,
        [],
        none,
        none,
        none,
        {name: none for name in spec.summed},
        {name: none for name in spec.summed},
        {name: nan for name in spec.ranged},
        {name: nan for name in spec.ranged},
        {name: Triples.empty() for name in spec.sketched},
    )


MAX_PIECES = 1_000_000
"""Records are aggregated in chunks of at most about this many (record, bin) pieces, so that
a flood of long intervals (up to 20,000 bins each) costs time, not memory."""


def chunked_partials(spec: AggSpec, columns: Columns) -> Iterator[Cells]:
    """:func:`partials` of consecutive chunks of the rows, each of at most ~MAX_PIECES pieces."""
    first = columns.start_ms // spec.bin_ms
    last = np.maximum(columns.end_ms - 1, columns.start_ms) // spec.bin_ms
    pieces = np.cumsum(last - first + 1)
    if not len(pieces) or pieces[-1] <= MAX_PIECES:
        yield partials(spec, columns)
        return
    cuts = np.searchsorted(pieces, np.arange(MAX_PIECES, int(pieces[-1]), MAX_PIECES), "right")
    for lo, hi in itertools.pairwise([0, *np.unique(cuts).tolist(), len(pieces)]):
        if hi > lo:
            yield partials(spec, columns.take(np.arange(lo, hi)))


def partials(spec: AggSpec, columns: Columns) -> Cells:
    """Aggregate a batch into cells, one per (bin start, key tuple) it touches."""
    if len(columns) == 0:
        return empty_cells(spec)
    pieces = spread(columns.start_ms, columns.end_ms, spec.bin_ms)
    codes, dictionaries = _group_codes(columns.keys, len(columns))
    groups = max(1, int(codes.max()) + 1)
    first_bin = int(pieces.bin_start.min()) // spec.bin_ms
    combined = (pieces.bin_start // spec.bin_ms - first_bin) * groups + codes[pieces.row]
    # One sort gives the cells, their boundaries and each piece's cell (the order of pieces
    # inside a cell does not matter: every reduction is commutative).
    order = np.argsort(combined)
    ordered = combined[order]
    bounds = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    inverse = np.empty(len(combined), dtype=np.intp)
    inverse[order] = np.repeat(np.arange(len(bounds)), np.diff(np.r_[bounds, len(combined)]))
    bin_index, code = np.divmod(ordered[bounds], groups)
    group_codes, group = np.unique(code, return_inverse=True)
    cells = _Reducer(order, bounds)
    sums, n = _sums(spec, columns, pieces, cells)
    mins, maxs = _ranges(spec, columns, pieces, cells)
    return Cells(
        (first_bin + bin_index) * spec.bin_ms,
        group.astype(np.int64),
        _decode_groups(group_codes, dictionaries),
        cells.add(np.ones(len(pieces), dtype=np.int64)),
        cells.add(pieces.overlap_ms),
        cells.add(pieces.last.astype(np.int64)),
        sums,
        n,
        mins,
        maxs,
        {name: _sketch(columns, pieces, inverse, name) for name in spec.sketched},
    )


def _group_codes(keys: list[pa.Array], rows: int) -> tuple[npt.NDArray[np.int64], list[list[Any]]]:
    """One integer per row identifying its key tuple, and each key's dictionary."""
    codes = np.zeros(rows, dtype=np.int64)
    dictionaries: list[list[Any]] = []
    stride = 1
    for column in keys:
        chunked = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        encoded = pc.dictionary_encode(chunked, null_encoding="encode")
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        # NaN (DuckDB's 0.0 / 0.0) never equals itself: as a key it would split its group.
        dictionary = [None if _is_nan(v) else v for v in encoded.dictionary.to_pylist()]
        codes += indices * stride
        stride *= max(1, len(dictionary))
        dictionaries.append(dictionary)
    return codes, dictionaries


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _decode_groups(
    codes: npt.NDArray[np.int64], dictionaries: list[list[Any]]
) -> list[tuple[Any, ...]]:
    """The key tuples of group codes (the inverse of :func:`_group_codes`)."""
    columns: list[list[Any]] = []
    rest = codes
    for dictionary in dictionaries:
        size = max(1, len(dictionary))
        rest, index = np.divmod(rest, size)
        columns.append(
            [dictionary[i] for i in index.tolist()] if dictionary else [None] * len(codes)
        )
    if not columns:
        return [()] * len(codes)
    return list(zip(*columns, strict=True))


@dataclass
class _Reducer:
    """Reductions of per-piece arrays into the cells (pieces sorted by ``order``)."""

    order: npt.NDArray[np.intp]
    bounds: npt.NDArray[np.intp]

    def add(self, values: npt.NDArray[Any]) -> I64:
        return np.add.reduceat(values[self.order], self.bounds).astype(np.int64)

    def add_exact(self, values: I64, name: str) -> I64:
        """:meth:`add`, refusing to wrap around silently."""
        total = self.add(values)
        # Float sums err by far less than the 2**64 that a wrapped integer sum is off by.
        approx = np.add.reduceat(values[self.order].astype(np.float64), self.bounds)
        if np.any(np.abs(approx - total) > 2.0**62):
            raise _overflow(name)
        return total

    def fmin(self, values: F64) -> F64:
        return np.fmin.reduceat(values[self.order], self.bounds)

    def fmax(self, values: F64) -> F64:
        return np.fmax.reduceat(values[self.order], self.bounds)


def _sums(
    spec: AggSpec, columns: Columns, pieces: Pieces, cells: _Reducer
) -> tuple[dict[str, I64], dict[str, I64]]:
    sums, counts = {}, {}
    for name in spec.summed:
        values, valid = columns.summed[name]
        if name in spec.spread:
            share = apportion(values, pieces)
            present = valid[pieces.row]
        else:
            share = np.where(pieces.last, values[pieces.row], 0)
            present = pieces.last & valid[pieces.row]
        sums[name] = cells.add(share)
        counts[name] = cells.add(present.astype(np.int64))
    return sums, counts


def _ranges(
    spec: AggSpec, columns: Columns, pieces: Pieces, cells: _Reducer
) -> tuple[dict[str, F64], dict[str, F64]]:
    mins, maxs = {}, {}
    for name in spec.ranged:
        values = np.where(pieces.last, columns.values[name][pieces.row], np.nan)
        mins[name], maxs[name] = cells.fmin(values), cells.fmax(values)
    return mins, maxs


def _sketch(columns: Columns, pieces: Pieces, inverse: npt.NDArray[np.intp], name: str) -> Triples:
    values = columns.values[name][pieces.row]
    keep = pieces.last & np.isfinite(values)  # a division by zero gives inf: no bucket holds it
    count = np.ones(int(keep.sum()), dtype=np.int64)
    return Triples(inverse[keep].astype(np.int64), bucket_indexes(values[keep]), count).combined()
