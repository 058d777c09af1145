"""A small mergeable quantile sketch (DDSketch with a 1 % relative accuracy).

Why this one: its state is a map from logarithmic bucket index to a count, so inserting and
merging are additions of integers. The result does not depend on the order in which values
arrive or on how batches were cut, which is what lets the streaming job and the batch
recompute agree to the last digit (a t-digest's centroids depend on arrival order). Buckets
are never collapsed: for positive values between 1 ms and 30 years there are about 1,200 of
them at most, and a bin of similar values uses a few dozen.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
MIN_MAGNITUDE = 1e-9
"""Values closer to zero than this count as zero."""


def bucket_indexes(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """The signed bucket of each value: ``0`` for zero, ``±(k + 1)`` for ``±gamma^k``."""
    magnitude = np.abs(values)
    nonzero = magnitude >= MIN_MAGNITUDE
    safe = np.where(nonzero, magnitude, 1.0)
    k = np.ceil(np.log(safe) / _LOG_GAMMA).astype(np.int64)
    # Shift so that index 0 stays free for zero: positive k+BIAS is always >= 1.
    signed = np.sign(values).astype(np.int64) * (k + _BIAS)
    return np.where(nonzero, signed, 0)


_BIAS = 1 - (math.ceil(math.log(MIN_MAGNITUDE) / _LOG_GAMMA))


def bucket_value(index: int) -> float:
    """The representative value of a bucket (within the relative accuracy of its members)."""
    if index == 0:
        return 0.0
    k = abs(index) - _BIAS
    value = 2 * GAMMA**k / (GAMMA + 1)
    return value if index > 0 else -value


def _value_order(index: int) -> tuple[int, int]:
    """Sort key putting buckets in the order of their values (negatives, zero, positives)."""
    return (0 if index < 0 else 1 if index == 0 else 2, index)


class Sketch:
    """Counts per bucket; mergeable, order-independent, JSON-serialisable."""

    __slots__ = ("_order", "counts")

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = counts if counts is not None else {}
        self._order: list[int] | None = None

    def add_buckets(self, indexes: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> None:
        """Add ``counts[i]`` values to bucket ``indexes[i]``."""
        own = self.counts
        self._order = None
        for index, count in zip(indexes.tolist(), counts.tolist(), strict=True):
            own[index] = own.get(index, 0) + count

    def merge(self, other: Sketch) -> None:
        """Add another sketch's values to this one."""
        own = self.counts
        self._order = None
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
        if self._order is None or len(self._order) != len(self.counts):
            self._order = sorted(self.counts, key=_value_order)
        ordered = self._order
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
