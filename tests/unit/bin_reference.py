"""Bins one at a time, as plain objects: the reference the columnar engine is tested against.

An :class:`Acc` is one bin's state, merged field by field; :func:`render` and :func:`record`
make its output record as the jobs' bulk writer must, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gridwatch.record import Record, canonical_json, hash128
from gridwatch.windowing.bins import AggSpec, BinKey, Measure
from gridwatch.windowing.cells import Cells
from gridwatch.windowing.sketch import bucket_value


def _value_order(index: int) -> tuple[int, int]:
    """Sort key putting buckets in the order of their values (negatives, zero, positives)."""
    return (0 if index < 0 else 1 if index == 0 else 2, index)


class Sketch:
    """Counts per bucket; mergeable, order-independent, JSON-serialisable."""

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = counts if counts is not None else {}

    def merge(self, other: Sketch) -> None:
        """Add another sketch's values to this one."""
        own = self.counts
        for index, count in other.counts.items():
            own[index] = own.get(index, 0) + count

    @property
    def total(self) -> int:
        """How many values the sketch holds."""
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The value at rank ``q * (n - 1)`` (``None`` when empty)."""
        total = self.total
        if total == 0:
            return None
        rank = q * (total - 1)
        seen = 0
        ordered = sorted(self.counts, key=_value_order)
        for index in ordered:
            seen += self.counts[index]
            if seen > rank:
                return bucket_value(index)
        return bucket_value(ordered[-1])

    def to_json(self) -> list[tuple[int, int]]:
        """Compact form: ``[[bucket, count], ...]`` sorted by bucket."""
        return sorted(self.counts.items())

    @classmethod
    def from_json(cls, value: Any) -> Sketch:
        """The inverse of :meth:`to_json`."""
        return cls({int(index): int(count) for index, count in value})


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


def record(
    producer: str, type_: str, spec: AggSpec, key: BinKey, acc: Acc, *, revision: int, state: bool
) -> Record:
    """The output record of one bin; its id hashes producer, type, bin length, start and keys."""
    data = render(spec, key[0], key[1], acc)
    data["revision"] = revision
    if state:
        data["_acc"] = acc.to_json()
    record_id = hash128(
        producer.encode(),
        type_.encode(),
        str(spec.bin_ms).encode(),
        str(key[0]).encode(),
        canonical_json(list(key[1])),
    )
    return Record(producer, type_, key[0], record_id, type_prefix="agg", data=data)


def cells_of(spec: AggSpec, accs: Mapping[BinKey, Acc]) -> Cells:
    """Cells holding the accumulators."""
    return Cells.from_states(spec, list(accs), [acc.to_json() for acc in accs.values()])


def accs_of(cells: Cells) -> dict[BinKey, Acc]:
    """The cells as accumulators."""
    states = cells.acc_json()
    return {key: Acc.from_json(s) for key, s in zip(cells.bin_keys(), states, strict=True)}
