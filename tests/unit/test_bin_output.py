"""Bulk output lines equal one-by-one records; bulk quantiles equal the sketch's; checkpoints."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.jobs.aggregate import AggregateConfig, AggregateCore
from gridwatch.jobs.bins import Acc
from gridwatch.jobs.output import quantiles
from gridwatch.jobs.sketch import Sketch
from gridwatch.jobs.windows import WindowState
from gridwatch.record import encode

sketch_counts = st.dictionaries(
    st.integers(-1500, 1500), st.integers(1, 10**12), min_size=0, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), sketch_counts), max_size=12), st.floats(0, 1))
def test_bulk_quantiles_equal_the_sketch(counts: list[dict[int, int] | None], q: float) -> None:
    sketches = [None if c is None else Sketch(dict(c)) for c in counts]
    expected = [None if s is None else s.quantile(q) for s in sketches]
    assert quantiles(sketches, q) == expected


def acc_strategy() -> st.SearchStrategy[Acc]:
    values = st.floats(-1e12, 1e12, allow_nan=False)
    return st.builds(
        Acc,
        st.integers(0, 10**6),
        st.integers(0, 10**9),
        st.integers(0, 10**6),
        st.dictionaries(st.sampled_from(["bytes", "rate"]), st.integers(-(10**15), 10**15)),
        st.dictionaries(st.sampled_from(["bytes", "rate"]), st.integers(0, 10**6)),
        st.dictionaries(st.sampled_from(["rate"]), values),
        st.dictionaries(st.sampled_from(["rate"]), values),
        st.dictionaries(st.sampled_from(["rate"]), sketch_counts.map(Sketch)),
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
    keys = [(start, key) for start, key, _, _ in bins]
    accs = [acc for _, _, acc, _ in bins]
    revisions = [revision for *_, revision in bins]
    expected = [
        encode(core.record(key, acc, rev))
        for key, acc, rev in zip(keys, accs, revisions, strict=True)
    ]
    assert core.lines(keys, accs, revisions) == expected


def restored(raw: msgspec.Raw) -> dict[str, Any]:
    windows = WindowState(600_000, 0, 3_600_000)
    windows.load(raw)
    return windows.to_json()


def test_encoded_checkpoint_restores_the_same_state_after_changes() -> None:
    windows = WindowState(600_000, 0, 3_600_000)
    windows.add({(0, ("a", 1)): Acc(3, 10, 1, {"b": 5}, {"b": 1}, {}, {}, {})})
    windows.add({(600_000, ("b", None)): Acc(1, 2, 1, {}, {}, {"r": 1.5}, {"r": 2.5}, {})})
    windows.observe(600_000)
    assert restored(windows.to_raw()) == windows.to_json()
    # Emitting changes revisions and dirty flags; merging changes the accumulators; the
    # entries cached by the previous checkpoint must not be reused for those bins.
    assert [e.key for e in windows.emit()] == [(0, ("a", 1))]
    assert restored(windows.to_raw()) == windows.to_json()
    windows.add({(600_000, ("b", None)): Acc(1, 0, 0, {}, {}, {}, {"r": float("inf")}, {})})
    windows.add({(0, ("a", 1)): Acc(1, 1, 1, {"b": 1}, {"b": 1}, {}, {}, {})})
    assert restored(windows.to_raw()) == windows.to_json()
    assert restored(windows.to_raw())["bins"][1][2][6] == {"r": float("inf")}
    windows.observe(10 * 600_000)
    windows.emit()
    assert restored(windows.to_raw()) == windows.to_json()
