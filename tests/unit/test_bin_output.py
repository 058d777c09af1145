"""Bulk output lines equal one-by-one records; bulk quantiles equal the sketch's; checkpoints."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.errors import ConfigurationError
from gridwatch.jobs.aggregate.job import AggregateConfig, AggregateCore
from gridwatch.record import encode
from gridwatch.windowing.bins import AggSpec, BinKey, parse_measure
from gridwatch.windowing.cells import Cells, Triples
from gridwatch.windowing.output import Ranked
from gridwatch.windowing.table import BinTable
from tests.unit.bin_reference import Acc, Sketch, accs_of, cells_of, record

sketch_counts = st.dictionaries(
    st.integers(-1500, 1500), st.integers(1, 10**12), min_size=0, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), sketch_counts), max_size=12), st.floats(0, 1))
def test_bulk_quantiles_equal_the_sketch(counts: list[dict[int, int] | None], q: float) -> None:
    sketches = [None if c is None else Sketch(dict(c)) for c in counts]
    expected = [None if s is None else s.quantile(q) for s in sketches]
    triples = [
        (cell, bucket, count)
        for cell, c in enumerate(counts)
        for bucket, count in sorted((c or {}).items())
    ]
    columns = [np.array(column, dtype=np.int64) for column in zip(*triples, strict=True)]
    empty = [np.zeros(0, dtype=np.int64)] * 3
    assert Ranked(Triples(*(columns or empty)), len(counts)).quantile(q) == expected


def acc_strategy() -> st.SearchStrategy[Acc]:
    """Accumulators as the jobs build them: a sum is present exactly when it counts values,
    min and max together, a sketch only with them."""
    values = st.floats(-1e12, 1e12, allow_nan=False)

    def build(
        counts: tuple[int, int, int],
        sums: dict[str, tuple[int, int]],
        rate: tuple[float, float, dict[int, int]] | None,
    ) -> Acc:
        acc = Acc(*counts)
        for name, (total, n) in sums.items():
            acc.sums[name], acc.n[name] = total, n
        if rate is not None:
            low, high, buckets = rate
            acc.mins["rate"], acc.maxs["rate"] = min(low, high), max(low, high)
            if buckets:
                acc.sketches["rate"] = Sketch(buckets)
        return acc

    return st.builds(
        build,
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**9), st.integers(0, 10**6)),
        st.dictionaries(
            st.sampled_from(["bytes", "rate"]),
            st.tuples(st.integers(-(10**15), 10**15), st.integers(1, 10**6)),
        ),
        st.one_of(st.none(), st.tuples(values, values, sketch_counts)),
    )


def config(decimals: int, rollup_state: bool) -> AggregateConfig:
    return AggregateConfig(
        inputs=["feed"],
        producer="xrootd",
        output_type="stats",
        fields={"bytes": "BIGINT", "rate": "DOUBLE", "site": "VARCHAR", "n": "BIGINT"},
        start_field="start_time",
        end_field="end_time",
        group_by=["site", "n"],
        aggregates={
            "bytes": "sum(bytes)",
            "mean_rate": "mean(rate)",
            "rate": "sum(rate)",
            "low": "min(rate)",
            "high": "max(rate)",
            "p50": "p50(rate)",
            "p99": "p99.9(rate)",
        },
        spread=["bytes"],
        decimals=decimals,
        rollup_state=rollup_state,
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6).map(lambda b: b * 600_000),
            st.tuples(
                st.one_of(st.none(), st.text(max_size=4)), st.one_of(st.none(), st.integers())
            ),
            acc_strategy(),
            st.integers(0, 5),
        ),
        max_size=8,
    ),
    st.integers(0, 3),
    st.booleans(),
)
def test_bulk_lines_equal_encoded_records(
    bins: list[tuple[int, tuple[Any, ...], Acc, int]], decimals: int, rollup_state: bool
) -> None:
    core = AggregateCore(config(decimals, rollup_state))
    revision_of = {(start, key): revision for start, key, _, revision in bins}
    cells = cells_of(core.spec, {(start, key): acc for start, key, acc, _ in bins})
    revisions = [revision_of[key] for key in cells.bin_keys()]
    expected = [
        encode(record("xrootd", "stats", core.spec, key, acc, revision=rev, state=rollup_state))
        for (key, acc), rev in zip(accs_of(cells).items(), revisions, strict=True)
    ]
    assert core.lines(cells, revisions) == expected


SPEC = config(0, True).spec()


def cells(accs: dict[BinKey, Acc]) -> Cells:
    return cells_of(SPEC, accs)


def state(table: BinTable) -> tuple[Any, ...]:
    """Everything a table keeps, comparable."""
    rows = table.live_rows()
    kept = table.take(rows)
    accs = {key: acc.to_json() for key, acc in accs_of(kept).items()}
    flags = table._columns["revision"][rows].tolist(), table._columns["dirty"][rows].tolist()
    return table.max_event_ms, accs, dict(zip(accs, zip(*flags, strict=True), strict=True))


def restored(raw: msgspec.Raw | dict[str, Any]) -> BinTable:
    table = BinTable(SPEC, 0, 3_600_000)
    table.load(raw)
    return table


def test_checkpoint_restores_the_same_table_after_changes() -> None:
    table = BinTable(SPEC, 0, 3_600_000)
    rate = {"rate": Sketch({120: 2, 130: 1})}
    table.add(cells({(0, ("a", 1)): Acc(3, 10, 1, {"bytes": 5}, {"bytes": 1}, {}, {}, {})}))
    table.add(
        cells({(600_000, ("b", None)): Acc(1, 2, 1, {}, {}, {"rate": 1.5}, {"rate": 2.5}, rate)})
    )
    table.observe(600_000)
    assert state(restored(table.to_raw())) == state(table)
    emitted, revisions = table.emit()
    assert emitted.bin_keys() == [(0, ("a", 1))] and revisions.tolist() == [1]
    assert state(restored(table.to_raw())) == state(table)
    inf = {"rate": float("inf")}
    table.add(cells({(600_000, ("b", None)): Acc(1, 0, 0, {}, {}, inf, inf, rate)}))
    table.add(cells({(0, ("a", 1)): Acc(1, 1, 1, {"bytes": 1}, {"bytes": 1}, {}, {}, {})}))
    assert state(restored(table.to_raw())) == state(table)
    assert state(table)[1][(600_000, ("b", None))] == [
        2,
        2,
        1,
        {},
        {},
        {"rate": 1.5},
        {"rate": float("inf")},
        {"rate": [(120, 4), (130, 2)]},
    ]
    table.observe(10 * 600_000)
    emitted, revisions = table.emit()
    assert emitted.bin_keys() == [(0, ("a", 1)), (600_000, ("b", None))]
    assert revisions.tolist() == [2, 1]
    assert state(restored(table.to_raw())) == state(table)


def test_checkpoint_of_earlier_versions_loads() -> None:
    acc = Acc(3, 10, 1, {"bytes": 5}, {"bytes": 1}, {"rate": 1.0}, {"rate": 2.0}, {})
    acc.sketches["rate"] = Sketch({3: 1, 5: 2})
    old = {"max_event_ms": 5, "bins": [[0, ["a", 1], acc.to_json(), 2, True]]}
    table = restored(old)
    assert state(table) == (5, {(0, ("a", 1)): acc.to_json()}, {(0, ("a", 1)): (2, True)})


def test_forgotten_bins_are_compacted_away() -> None:
    table = BinTable(SPEC, 0, 0)
    for step in range(3000):
        start = step * 600_000
        acc = Acc(1, 1, 1, {"bytes": step}, {"bytes": 1}, {}, {}, {})
        table.add(cells({(start, ("g", step % 7)): acc}))
        table.observe(start + 600_000)
        emitted, _ = table.emit()
        assert emitted.bin_keys() == [(start, ("g", step % 7))]
    assert len(table) == 0
    assert table.size < 2100  # rows of forgotten bins were reclaimed
    assert len(table.groups) <= 7


def test_checkpoint_loads_after_the_measures_changed() -> None:
    fewer = AggSpec(600_000, ("site", "n"), (parse_measure("bytes", "sum(bytes)"),))
    table = BinTable(fewer)
    table.add(cells_of(fewer, {(0, ("a", 1)): Acc(2, 0, 0, {"bytes": 7}, {"bytes": 2})}))
    # The full spec also wants rate sums, ranges and sketches: they start empty.
    _, accs, _ = state(restored(table.to_raw()))
    assert accs == {(0, ("a", 1)): [2, 0, 0, {"bytes": 7}, {"bytes": 2}, {}, {}, {}]}
    # And back: measures the job no longer has are dropped.
    full = restored(table.to_raw())
    back = BinTable(fewer)
    back.load(full.to_raw())
    assert accs_of(back.take(back.live_rows()))[(0, ("a", 1))].to_json() == accs[(0, ("a", 1))]


def test_cells_of_keys_equal_in_python_are_merged_not_overwritten() -> None:
    spec = AggSpec(600_000, ("x",), (parse_measure("total", "sum(v)"),))
    table = BinTable(spec)
    one = Acc(1, 0, 0, {"v": 2}, {"v": 1})
    two = cells_of(spec, {(0, ("a",)): one, (600_000, ("b",)): one})
    # As a batch has them: one bin, two dictionary entries of a DOUBLE key column.
    two.start, two.groups = np.zeros(2, dtype=np.int64), [(0.0,), (-0.0,)]
    table.add(two)
    assert [acc.to_json() for acc in accs_of(table.take(table.live_rows())).values()] == [
        [2, 0, 0, {"v": 4}, {"v": 2}, {}, {}, {}]
    ]


def test_a_checkpoint_of_other_keys_or_bins_is_refused_with_the_reason() -> None:
    table = BinTable(SPEC)
    table.add(cells({(600_000, ("a", 1)): Acc(1, 0, 0)}))
    other_keys = BinTable(AggSpec(600_000, ("site",), SPEC.measures))
    with pytest.raises(ConfigurationError, match="2 group_by keys and the job has 1"):
        other_keys.load(table.to_raw())
    hourly = BinTable(AggSpec(3_600_000, SPEC.keys, SPEC.measures))
    with pytest.raises(ConfigurationError, match="not 3600 s long"):
        hourly.load(table.to_raw())
