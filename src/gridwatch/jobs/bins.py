"""Time-binned aggregates: the accumulators of one (bin, group) and how a batch fills them.

Everything here is exact and commutative, so results never depend on arrival order or on how
the input was cut into batches: counts and sums are integers (sums of non-integer fields are
fixed-point with ``decimals`` digits), min and max are order-free, and quantiles come from a
bucket-count sketch. ``mean`` is computed from the exact sum and count only when rendering.

In a bin, for a record with an interval:

- ``count`` counts the records that overlap the bin, ``ended`` those whose end is in it;
- ``active_time_ms`` sums the overlaps, ``active`` is that divided by the bin length (the
  average number of records in progress, i.e. concurrency);
- fields listed in ``spread`` are apportioned over the bins (see :mod:`.spread`), so their
  ``sum`` adds up exactly to the record's value over all bins;
- every other measure (and min, max and quantiles of spread fields) takes the record's whole
  value once, in the bin holding its end (where the record is reported).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridwatch.jobs.sketch import Sketch, bucket_indexes
from gridwatch.jobs.spread import Pieces, apportion, spread

OPS = ("sum", "mean", "min", "max")
_MEASURE = re.compile(
    r"^\s*(?P<op>[a-z]+(?:\d+(?:\.\d+)?)?)\s*\(\s*(?P<field>[A-Za-z_][\w]*)\s*\)\s*$"
)
_QUANTILE = re.compile(r"^p(?P<pct>\d+(?:\.\d+)?)$")
BinKey = tuple[int, tuple[Any, ...]]


@dataclass(frozen=True)
class Measure:
    """One output aggregate: ``name: op(field)``; ``quantile`` in [0, 1] for ``pNN``."""

    name: str
    op: str
    field: str
    quantile: float | None = None


def parse_measure(name: str, text: str) -> Measure:
    """Parse ``sum(bytes)``, ``mean(x)``, ``min(x)``, ``max(x)`` or ``p95(x)``/``p99.9(x)``."""
    match = _MEASURE.match(text)
    if not match:
        raise ValueError(f"{name}: expected 'op(field)' such as 'sum(bytes)', got {text!r}")
    op, field_name = match["op"], match["field"]
    quantile = _QUANTILE.match(op)
    if quantile:
        pct = float(quantile["pct"])
        if not 0 <= pct <= 100:
            raise ValueError(f"{name}: percentile {pct:g} is outside 0..100")
        return Measure(name, "quantile", field_name, pct / 100)
    if op not in OPS:
        raise ValueError(f"{name}: unknown operation {op!r} (sum, mean, min, max, pNN)")
    return Measure(name, op, field_name)


@dataclass(frozen=True)
class AggSpec:
    """What to compute per bin: keys, measures, which fields are spread, fixed-point digits."""

    bin_ms: int
    keys: tuple[str, ...]
    measures: tuple[Measure, ...]
    spread: frozenset[str] = frozenset()
    intervals: bool = False
    decimals: int = 0

    @property
    def summed(self) -> tuple[str, ...]:
        """Fields whose exact sum is kept (for ``sum`` and ``mean``)."""
        return _unique(m.field for m in self.measures if m.op in ("sum", "mean"))

    @property
    def ranged(self) -> tuple[str, ...]:
        """Fields whose min and max are kept (also to clamp quantiles)."""
        return _unique(m.field for m in self.measures if m.op in ("min", "max", "quantile"))

    @property
    def sketched(self) -> tuple[str, ...]:
        """Fields with a quantile sketch."""
        return _unique(m.field for m in self.measures if m.op == "quantile")


def _unique(names: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


@dataclass
class Acc:
    """The mergeable aggregate state of one bin and group."""

    count: int = 0
    active_ms: int = 0
    ended: int = 0
    sums: dict[str, int] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    mins: dict[str, float] = field(default_factory=dict)
    maxs: dict[str, float] = field(default_factory=dict)
    sketches: dict[str, Sketch] = field(default_factory=dict)

    def merge(self, other: Acc) -> None:
        """Add ``other`` into this accumulator."""
        self.count += other.count
        self.active_ms += other.active_ms
        self.ended += other.ended
        for name, value in other.sums.items():
            self.sums[name] = self.sums.get(name, 0) + value
        for name, value in other.n.items():
            self.n[name] = self.n.get(name, 0) + value
        for name, low in other.mins.items():
            self.mins[name] = min(low, self.mins.get(name, low))
        for name, high in other.maxs.items():
            self.maxs[name] = max(high, self.maxs.get(name, high))
        for name, sketch in other.sketches.items():
            self.sketches.setdefault(name, Sketch()).merge(sketch)

    def to_json(self) -> list[Any]:
        """Compact JSON form."""
        sketches = {name: s.to_json() for name, s in self.sketches.items()}
        return [
            self.count,
            self.active_ms,
            self.ended,
            self.sums,
            self.n,
            self.mins,
            self.maxs,
            sketches,
        ]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> Acc:
        """The inverse of :meth:`to_json`."""
        count, active, ended, sums, n, mins, maxs, sketches = value
        return cls(
            count,
            active,
            ended,
            dict(sums),
            dict(n),
            dict(mins),
            dict(maxs),
            {name: Sketch.from_json(s) for name, s in sketches.items()},
        )


@dataclass
class Columns:
    """A batch as arrays: interval (or point) per row, key columns, and measure inputs.

    ``summed`` holds fixed-point integers (0 when null) with their validity; ``values`` holds
    floats (NaN when null) for min, max and quantiles.
    """

    start_ms: npt.NDArray[np.int64]
    end_ms: npt.NDArray[np.int64]
    keys: list[pa.Array]
    summed: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]]
    values: dict[str, npt.NDArray[np.float64]]

    def take(self, rows: npt.NDArray[np.intp]) -> Columns:
        """Only the given rows."""
        index = pa.array(rows)
        return Columns(
            self.start_ms[rows],
            self.end_ms[rows],
            [k.take(index) for k in self.keys],
            {n: (v[rows], ok[rows]) for n, (v, ok) in self.summed.items()},
            {n: v[rows] for n, v in self.values.items()},
        )

    def __len__(self) -> int:
        return len(self.start_ms)

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        """The rows of several batches, in order."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return Columns(
            np.concatenate([p.start_ms for p in parts]),
            np.concatenate([p.end_ms for p in parts]),
            [_concat_arrays([p.keys[i] for p in parts]) for i in range(len(first.keys))],
            {
                name: (
                    np.concatenate([p.summed[name][0] for p in parts]),
                    np.concatenate([p.summed[name][1] for p in parts]),
                )
                for name in first.summed
            },
            {name: np.concatenate([p.values[name] for p in parts]) for name in first.values},
        )


def _concat_arrays(arrays: Sequence[pa.Array | pa.ChunkedArray]) -> pa.ChunkedArray:
    chunks = [
        chunk
        for array in arrays
        for chunk in (array.chunks if isinstance(array, pa.ChunkedArray) else [array])
    ]
    return pa.chunked_array(chunks, type=arrays[0].type)


def int_column(table: pa.Table, name: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """An integer column as (values with nulls as 0, validity)."""
    column = table.column(name)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    values = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return values.astype(np.int64, copy=False), valid.astype(bool, copy=False)


def float_column(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    """A numeric column as floats, NaN where null."""
    column = pc.fill_null(table.column(name).cast(pa.float64()), float("nan"))
    values: npt.NDArray[np.float64] = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return values


def _group_codes(keys: list[pa.Array], rows: int) -> tuple[npt.NDArray[np.int64], list[list[Any]]]:
    """One integer per row identifying its key tuple, and each key's dictionary."""
    codes = np.zeros(rows, dtype=np.int64)
    dictionaries: list[list[Any]] = []
    stride = 1
    for column in keys:
        chunked = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        encoded = pc.dictionary_encode(chunked, null_encoding="encode")
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        dictionary = encoded.dictionary.to_pylist()
        codes += indices * stride
        stride *= max(1, len(dictionary))
        dictionaries.append(dictionary)
    return codes, dictionaries


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


def partials(spec: AggSpec, columns: Columns) -> dict[BinKey, Acc]:
    """Aggregate a batch into accumulators per (bin start, key tuple)."""
    if len(columns) == 0:
        return {}
    pieces = spread(columns.start_ms, columns.end_ms, spec.bin_ms)
    codes, dictionaries = _group_codes(columns.keys, len(columns))
    groups = max(1, int(codes.max()) + 1)
    first_bin = int(pieces.bin_start.min()) // spec.bin_ms
    combined = (pieces.bin_start // spec.bin_ms - first_bin) * groups + codes[pieces.row]
    # One sort gives the cells, their boundaries and each piece's cell.
    order = np.argsort(combined, kind="stable")
    ordered = combined[order]
    bounds = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    unique = ordered[bounds]
    inverse = np.empty(len(combined), dtype=np.intp)
    inverse[order] = np.repeat(np.arange(len(bounds)), np.diff(np.r_[bounds, len(combined)]))
    cells = _Cells(order, bounds, inverse, len(unique))
    counts = cells.add(np.ones(len(pieces), dtype=np.int64)).tolist()
    active = cells.add(pieces.overlap_ms).tolist()
    ended = cells.add(pieces.last.astype(np.int64)).tolist()
    accs = [Acc(c, a, e) for c, a, e in zip(counts, active, ended, strict=True)]
    _fill_sums(spec, columns, pieces, cells, accs)
    _fill_ranges(spec, columns, pieces, cells, accs)
    _fill_sketches(spec, columns, pieces, inverse, accs)
    bin_index, code = np.divmod(unique, groups)
    starts = ((first_bin + bin_index) * spec.bin_ms).tolist()
    keys = _decode_groups(code, dictionaries)
    return dict(zip(zip(starts, keys, strict=True), accs, strict=True))


@dataclass
class _Cells:
    """Reductions of per-piece arrays into the (bin, group) cells."""

    order: npt.NDArray[np.intp]
    bounds: npt.NDArray[np.intp]
    inverse: npt.NDArray[np.intp]
    size: int

    def add(self, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.add.reduceat(values[self.order], self.bounds)

    def fmin(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.fmin.reduceat(values[self.order], self.bounds)

    def fmax(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.fmax.reduceat(values[self.order], self.bounds)


def _fill_sums(
    spec: AggSpec, columns: Columns, pieces: Pieces, cells: _Cells, accs: list[Acc]
) -> None:
    for name in spec.summed:
        values, valid = columns.summed[name]
        if name in spec.spread:
            share = apportion(values, pieces)
            present = valid[pieces.row]
        else:
            share = np.where(pieces.last, values[pieces.row], 0)
            present = pieces.last & valid[pieces.row]
        sums = cells.add(share).tolist()
        counts = cells.add(present.astype(np.int64)).tolist()
        for acc, total, count in zip(accs, sums, counts, strict=True):
            if count:
                acc.sums[name] = total
                acc.n[name] = count


def _fill_ranges(
    spec: AggSpec, columns: Columns, pieces: Pieces, cells: _Cells, accs: list[Acc]
) -> None:
    for name in spec.ranged:
        values = np.where(pieces.last, columns.values[name][pieces.row], np.nan)
        lows, highs = cells.fmin(values).tolist(), cells.fmax(values).tolist()
        for acc, low, high in zip(accs, lows, highs, strict=True):
            if not math.isnan(low):  # the cell has values
                acc.mins[name] = low
                acc.maxs[name] = high


_BUCKET_SPAN = 1 << 17


def _fill_sketches(
    spec: AggSpec, columns: Columns, pieces: Pieces, inverse: npt.NDArray[np.intp], accs: list[Acc]
) -> None:
    for name in spec.sketched:
        values = columns.values[name][pieces.row]
        keep = pieces.last & ~np.isnan(values)
        buckets = bucket_indexes(values[keep])
        pairs = inverse[keep].astype(np.int64) * _BUCKET_SPAN + (buckets + _BUCKET_SPAN // 2)
        unique, counts = np.unique(pairs, return_counts=True)
        cells, bucket = np.divmod(unique, _BUCKET_SPAN)
        bucket -= _BUCKET_SPAN // 2
        # Pairs are sorted by cell: build each cell's bucket map in one go.
        cell_list, bucket_list, count_list = cells.tolist(), bucket.tolist(), counts.tolist()
        edges = np.flatnonzero(np.r_[True, np.diff(cells) != 0, True]).tolist()
        for lo, hi in itertools.pairwise(edges):
            accs[cell_list[lo]].sketches[name] = Sketch(
                dict(zip(bucket_list[lo:hi], count_list[lo:hi], strict=True))
            )


def merge_into(target: dict[BinKey, Acc], source: Mapping[BinKey, Acc]) -> set[BinKey]:
    """Merge partial accumulators into ``target``; return the keys that changed."""
    for key, acc in source.items():
        existing = target.get(key)
        if existing is None:
            target[key] = acc
        else:
            existing.merge(acc)
    return set(source)


def render(spec: AggSpec, bin_start: int, keys: tuple[Any, ...], acc: Acc) -> dict[str, Any]:
    """The output data of one bin: window, keys, built-in counts and the measures."""
    scale = 10**spec.decimals
    data: dict[str, Any] = {
        "window_start": bin_start,
        "window_end": bin_start + spec.bin_ms,
        "window_s": spec.bin_ms // 1000,
    }
    data.update(zip(spec.keys, keys, strict=True))
    data["count"] = acc.count
    if spec.intervals:
        data["ended"] = acc.ended
        data["active_time_ms"] = acc.active_ms
        data["active"] = acc.active_ms / spec.bin_ms
    for measure in spec.measures:
        data[measure.name] = _measure_value(measure, acc, scale)
    return data


def _measure_value(measure: Measure, acc: Acc, scale: int) -> Any:
    name = measure.field
    if measure.op == "sum":
        total = acc.sums.get(name, 0)
        return total if scale == 1 else total / scale
    if measure.op == "mean":
        n = acc.n.get(name, 0)
        return acc.sums.get(name, 0) / scale / n if n else None
    if measure.op == "min":
        return acc.mins.get(name)
    if measure.op == "max":
        return acc.maxs.get(name)
    sketch = acc.sketches.get(name)
    value = sketch.quantile(measure.quantile or 0.0) if sketch else None
    if value is None:
        return None
    # The sketch is accurate to 1 %; the exact extremes bound it.
    return min(max(value, acc.mins.get(name, value)), acc.maxs.get(name, value))
