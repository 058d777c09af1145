"""Time-binned aggregates: what a job computes per bin (:class:`AggSpec`) and its input columns.

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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

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
    kept: tuple[tuple[str, str], ...] = ()
    """More state to keep though no measure names it, as ``("sum" | "range" | "sketch", field)``
    pairs: a rollup passes its inputs' whole state on in ``_acc`` for a further rollup."""

    @property
    def summed(self) -> tuple[str, ...]:
        """Fields whose exact sum is kept (for ``sum`` and ``mean``)."""
        return self._fields(("sum", "mean"), "sum")

    @property
    def ranged(self) -> tuple[str, ...]:
        """Fields whose min and max are kept (also to clamp quantiles)."""
        return self._fields(("min", "max", "quantile"), "range")

    @property
    def sketched(self) -> tuple[str, ...]:
        """Fields with a quantile sketch."""
        return self._fields(("quantile",), "sketch")

    def _fields(self, ops: tuple[str, ...], kind: str) -> tuple[str, ...]:
        named = [m.field for m in self.measures if m.op in ops]
        return _unique([*named, *(name for k, name in self.kept if k == kind)])


def _unique(names: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


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
