"""Spreading intervals over bins: exact apportioning, properties and edge cases."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.windowing import cells
from gridwatch.windowing.bins import AggSpec, BinKey, Columns, Measure
from gridwatch.windowing.cells import partials
from gridwatch.windowing.spread import _by_remainder, apportion, spread
from gridwatch.windowing.table import BinTable
from tests.unit.bin_reference import Acc, accs_of

BIN = 600_000


def arr(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_one_interval_over_three_bins_largest_remainder() -> None:
    # 100 units over [5 min, 25 min): overlaps 5, 10, 5 minutes -> exact shares 25, 50, 25.
    pieces = spread(arr([300_000]), arr([1_500_000]), BIN)
    assert pieces.bin_start.tolist() == [0, 600_000, 1_200_000]
    assert pieces.overlap_ms.tolist() == [300_000, 600_000, 300_000]
    assert apportion(arr([100]), pieces).tolist() == [25, 50, 25]
    # 10 units: exact 2.5, 5, 2.5 -> floors 2, 5, 2, one unit left; equal remainders, the
    # earlier bin wins.
    assert apportion(arr([10]), pieces).tolist() == [3, 5, 2]
    assert pieces.last.tolist() == [False, False, True]


def test_zero_length_interval_is_one_piece_with_everything() -> None:
    pieces = spread(arr([BIN]), arr([BIN]), BIN)
    assert pieces.bin_start.tolist() == [BIN]
    assert pieces.overlap_ms.tolist() == [0]
    assert apportion(arr([7]), pieces).tolist() == [7]


def test_end_is_exclusive() -> None:
    pieces = spread(arr([0]), arr([BIN]), BIN)
    assert pieces.bin_start.tolist() == [0]
    assert pieces.overlap_ms.tolist() == [BIN]


def test_negative_totals_keep_their_sign_and_huge_totals_do_not_overflow() -> None:
    pieces = spread(arr([0, 0]), arr([3 * BIN, 7 * 86_400_000]), BIN)
    shares = apportion(arr([-10, 2**61]), pieces)
    first = shares[pieces.row == 0]
    assert first.tolist() == [-4, -3, -3]
    assert int(shares[pieces.row == 1].astype(object).sum()) == 2**61


def test_backwards_interval_is_an_error() -> None:
    with pytest.raises(ValueError, match="end >= start"):
        spread(arr([10]), arr([5]), BIN)


intervals = st.lists(
    st.tuples(
        st.integers(0, 10 * 86_400_000),  # start
        st.integers(0, 3 * 86_400_000),  # duration
        st.integers(0, 10**15),  # total
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(intervals, st.sampled_from([60_000, 600_000, 3_600_000, 86_400_000]))
def test_pieces_add_up_to_the_total_and_are_never_negative(
    rows: list[tuple[int, int, int]], bin_ms: int
) -> None:
    start = arr([r[0] for r in rows])
    end = start + arr([r[1] for r in rows])
    totals = arr([r[2] for r in rows])
    pieces = spread(start, end, bin_ms)
    shares = apportion(totals, pieces)
    assert (shares >= 0).all()
    per_row = np.zeros(len(rows), dtype=object)
    np.add.at(per_row, pieces.row, shares.astype(object))
    assert per_row.tolist() == totals.tolist()
    # Overlaps cover the interval exactly, and each share is within one unit of exact.
    overlap = np.zeros(len(rows), dtype=np.int64)
    np.add.at(overlap, pieces.row, pieces.overlap_ms)
    assert overlap.tolist() == (end - start).tolist()
    duration = (end - start)[pieces.row]
    exact = [
        t * o / d if d else t
        for t, o, d in zip(
            totals[pieces.row].tolist(), pieces.overlap_ms.tolist(), duration.tolist(), strict=True
        )
    ]
    assert all(abs(s - e) < 1 + 1e-6 * e for s, e in zip(shares.tolist(), exact, strict=True))


def _columns(rows: list[tuple[int, int, int, str]]) -> Columns:
    return Columns(
        arr([r[0] for r in rows]),
        arr([r[0] + r[1] for r in rows]),
        [pa.array([r[3] for r in rows])],
        {"bytes": (arr([r[2] for r in rows]), np.ones(len(rows), dtype=bool))},
        {"bytes": np.array([float(r[2]) for r in rows])},
    )


SPEC = AggSpec(
    bin_ms=BIN,
    keys=("site",),
    measures=(
        Measure("bytes", "sum", "bytes"),
        Measure("top", "max", "bytes"),
        Measure("p50", "quantile", "bytes", 0.5),
    ),
    spread=frozenset({"bytes"}),
    intervals=True,
)
keyed = st.lists(
    st.tuples(
        st.integers(0, 86_400_000),
        st.integers(0, 7_200_000),
        st.integers(0, 10**12),
        st.sampled_from(["a", "b", "c"]),
    ),
    min_size=1,
    max_size=60,
)


def _merged(*batches: list[tuple[int, int, int, str]]) -> dict[BinKey, list[Any]]:
    """The bins of the batches merged in a table, as accumulator JSON."""
    table = BinTable(SPEC)
    for batch in batches:
        if batch:
            table.add(partials(SPEC, _columns(batch)))
    return {k: v.to_json() for k, v in accs_of(table.take(table.live_rows())).items()}


@settings(max_examples=100, deadline=None)
@given(keyed, st.randoms(use_true_random=False))
def test_order_and_batching_do_not_change_bins(
    rows: list[tuple[int, int, int, str]], rnd: random.Random
) -> None:
    whole = _merged(rows)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    cuts = sorted(rnd.randrange(len(shuffled) + 1) for _ in range(3))
    parts = [shuffled[a:b] for a, b in itertools.pairwise([0, *cuts, len(shuffled)])]
    assert _merged(*parts) == whole
    # Re-running gives the same output, and bins add up to the totals.
    assert _merged(rows) == whole
    accs = [Acc.from_json(value) for value in whole.values()]
    assert sum(acc.sums.get("bytes", 0) for acc in accs) == sum(r[2] for r in rows)
    assert sum(acc.active_ms for acc in accs) == sum(r[1] for r in rows)
    assert sum(acc.ended for acc in accs) == len(rows)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 2**40)), min_size=1, max_size=60))
def test_one_key_sort_orders_pieces_as_the_two_key_sort(pieces: list[tuple[int, int]]) -> None:
    pieces.sort(key=lambda piece: piece[0])  # pieces come grouped by record
    row = arr([p[0] for p in pieces])
    remainder = arr([p[1] for p in pieces])
    two_keys = np.lexsort((-remainder, row))
    assert _by_remainder(row, remainder, int(remainder.max()) + 1).tolist() == two_keys.tolist()
    # A bound too wide for one int64 key takes the two-key sort.
    assert _by_remainder(row, remainder, 2**61).tolist() == two_keys.tolist()


@settings(max_examples=50, deadline=None)
@given(keyed)
def test_chunks_of_a_batch_give_the_bins_of_the_whole(
    rows: list[tuple[int, int, int, str]],
) -> None:
    whole = _merged(rows)
    table = BinTable(SPEC)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cells, "MAX_PIECES", 7)
        chunks = list(cells.chunked_partials(SPEC, _columns(rows)))
    for chunk in chunks:
        table.add(chunk)
    assert len(chunks) >= sum(_pieces(r) for r in rows) // 7 // 2
    assert {k: v.to_json() for k, v in accs_of(table.take(table.live_rows())).items()} == whole


def _pieces(row: tuple[int, int, int, str]) -> int:
    start, length = row[0], row[1]
    return (max(start + length - 1, start)) // BIN - start // BIN + 1
