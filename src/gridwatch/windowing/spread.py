"""Spreading intervals over fixed time bins, vectorised with numpy.

A record with a start and an end touches every bin that ``[start, end)`` overlaps. Additive
values are apportioned to those bins in proportion to the overlap with the *largest remainder*
method, in exact integer arithmetic: bin ``i`` first gets ``floor(T * o_i / D)`` (``T`` the
total, ``o_i`` the overlap in ms, ``D = end - start``); the units still missing go one each to
the bins with the largest remainders ``T * o_i mod D``, ties to the earlier bin. The pieces of
every record therefore add up to exactly ``T``, none is negative when ``T`` is not, and the
result depends on nothing but the record itself.

A zero-length interval (``start == end``) is one piece in the bin holding ``start``, with the
whole total and an overlap of 0 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
_SAFE_PRODUCT = 2**62


@dataclass(frozen=True)
class Pieces:
    """The (record, bin) pairs of a batch, grouped by record in input order.

    ``row`` is the record's index in the batch, ``bin_start`` the bin's start (ms),
    ``overlap_ms`` the part of the interval inside the bin, ``last`` marks each record's last
    bin (the one holding its end), and ``first_index`` is where each record's pieces begin.
    """

    row: I64
    bin_start: I64
    overlap_ms: I64
    last: npt.NDArray[np.bool_]
    first_index: I64

    def __len__(self) -> int:
        return len(self.row)


def bin_floor(ms: I64, bin_ms: int) -> I64:
    """The start of the bin holding each instant (bins are aligned to the epoch)."""
    return (ms // bin_ms) * bin_ms


def spread(start_ms: I64, end_ms: I64, bin_ms: int) -> Pieces:
    """Cut each ``[start, end)`` (``end >= start`` required) into its bins."""
    if bin_ms <= 0:
        raise ValueError("bin_ms must be positive")
    if np.any(end_ms < start_ms):
        raise ValueError("every interval needs end >= start")
    first = start_ms // bin_ms
    last = np.where(end_ms > start_ms, (end_ms - 1) // bin_ms, first)
    counts = (last - first + 1).astype(np.int64)
    total = int(counts.sum())
    first_index = np.zeros(len(counts), dtype=np.int64)
    if len(counts):
        np.cumsum(counts[:-1], out=first_index[1:])
    row = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    offset = np.arange(total, dtype=np.int64) - np.repeat(first_index, counts)
    bin_start = (np.repeat(first, counts) + offset) * bin_ms
    starts = start_ms[row]
    ends = end_ms[row]
    overlap = np.minimum(ends, bin_start + bin_ms) - np.maximum(starts, bin_start)
    overlap = np.maximum(overlap, 0)
    is_last = offset == counts[row] - 1
    return Pieces(row, bin_start, overlap, is_last, first_index)


def apportion(totals: I64, pieces: Pieces) -> I64:
    """Each piece's integer share of its record's total (largest remainder, exact)."""
    if len(pieces) == 0:
        return np.zeros(0, dtype=np.int64)
    totals = np.asarray(totals, dtype=np.int64)
    duration = np.add.reduceat(pieces.overlap_ms, pieces.first_index)
    magnitude = np.abs(totals)
    if int(magnitude.max(initial=0)) * int(duration.max(initial=0)) >= _SAFE_PRODUCT:
        # Rare huge totals over long spans: Python integers cannot overflow.
        share = _largest_remainder(magnitude.astype(object), duration.astype(object), pieces)
        return (np.sign(totals)[pieces.row] * share).astype(np.int64)
    share = _largest_remainder(magnitude, duration, pieces)
    return np.sign(totals)[pieces.row] * share


def _largest_remainder(magnitude: np.ndarray, duration: np.ndarray, pieces: Pieces) -> I64:
    row = pieces.row
    span = duration[row]
    point = span == 0
    # A zero-length interval has one piece, which takes everything.
    weight = np.where(point, 1, pieces.overlap_ms)
    divisor = np.where(point, 1, span)
    product = magnitude[row] * weight
    share = product // divisor
    remainder = product % divisor
    missing = magnitude - np.add.reduceat(share, pieces.first_index)
    if not np.any(missing):
        return share.astype(np.int64)
    order = _by_remainder(row, remainder.astype(np.int64), int(divisor.max()))
    rank = np.empty(len(row), dtype=np.int64)
    rank[order] = np.arange(len(row), dtype=np.int64) - pieces.first_index[row[order]]
    return (share + (rank < missing[row])).astype(np.int64)


def _by_remainder(row: I64, remainder: I64, bound: int) -> npt.NDArray[np.intp]:
    """Pieces ordered by record, then by remainder (largest first), then by bin.

    The sort is stable, so equal remainders keep bin order and the earlier bin wins. When row
    and remainder fit one int64 key, a single sort of that key (pieces come grouped by row,
    so it is nearly sorted) is many times faster than a two-key ``lexsort``.
    """
    shift = max(1, bound.bit_length())
    if (len(row) + 1).bit_length() + shift <= 62:
        return np.argsort((row << shift) + (bound - remainder), kind="stable")
    return np.lexsort((-remainder, row))
