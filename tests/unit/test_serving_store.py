"""The DuckDB time-series store: upserts, rollups, worst-state bins, retention and queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridwatch.serving.points import Point
from gridwatch.serving.query import Query, run_query
from gridwatch.serving.store import StagedPoints, TimeSeriesStore
from gridwatch.serving.tiers import BY_NAME, DAY_MS, HOUR_MS, MINUTE_MS

NOW_MS = 1_800_000_000_000 - (1_800_000_000_000 % DAY_MS) + 12 * HOUR_MS  # noon UTC
RETENTION = {"raw": 48 * HOUR_MS, "10m": 35 * DAY_MS, "1h": 800 * DAY_MS, "1d": None}


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW_MS)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> TimeSeriesStore:
    return TimeSeriesStore(tmp_path / "ts.duckdb", RETENTION, clock)


def write(store: TimeSeriesStore, points: list[tuple[Point, str]]) -> None:
    staged = StagedPoints()
    for point, rid in points:
        store.stage(staged, point, rid)
    store.write(staged)


def agg(ts: int, site: str, **fields: float) -> tuple[Point, str]:
    return Point("jobs_agg", {"site": site}, dict(fields), ts, True), ""


def read(store: TimeSeriesStore, tier: str, field: str, aggregate: str = "mean", **kw: object):
    query = Query(
        "jobs_agg",
        NOW_MS - 3 * DAY_MS,
        NOW_MS,
        [field],
        aggregate=aggregate,
        tier=tier,
        max_points=1,
        **kw,  # type: ignore[arg-type]
    )
    return run_query(store, query, {"status_code"})


def test_a_revised_bin_replaces_its_older_revision_in_every_tier(store: TimeSeriesStore) -> None:
    window = NOW_MS - 2 * HOUR_MS
    write(store, [agg(window, "CERN", jobs=10), agg(window + 10 * MINUTE_MS, "CERN", jobs=5)])
    write(store, [agg(window, "CERN", jobs=12)])  # the same window and group, revised
    for tier in ("raw", "10m", "1h", "1d"):
        result = read(store, tier, "jobs", "sum")
        assert [s.values.decode() for s in result.series] == [[17.0]], tier
    assert store.count_rows(BY_NAME["raw"]) == 2
    assert store.count_rows(BY_NAME["10m"]) == 2


def test_events_with_their_own_ids_add_up_and_replays_do_not(store: TimeSeriesStore) -> None:
    ts = NOW_MS - HOUR_MS
    events = [
        (Point("jobs_agg", {"site": "BNL"}, {"jobs": 1}, ts, False), f"id{i}") for i in range(3)
    ]
    write(store, events)
    write(store, events)  # delivered again after a crash
    assert read(store, "1d", "jobs", "count").series[0].values.decode() == [3.0]


def test_worst_state_survives_every_rollup(store: TimeSeriesStore) -> None:
    start = NOW_MS - DAY_MS
    points = [agg(start + i * MINUTE_MS, "CERN", status_code=0) for i in range(0, 1440, 5)]
    points.append(agg(start + 700 * MINUTE_MS, "CERN", status_code=2))  # a short outage
    write(store, points)
    for tier in ("10m", "1h", "1d"):
        result = read(store, tier, "status_code", "mean")
        assert result.series[0].aggregate == "worst"
        assert max(v for v in result.series[0].values.decode() if v is not None) == 2.0, tier
    # An ordinary field with the same values averages the outage away.
    write(store, [agg(p.timestamp_ms, "CERN", other=p.fields["status_code"]) for p, _ in points])
    assert read(store, "1d", "other", "mean").series[0].values.decode()[0] < 0.1


def test_rollups_keep_count_sum_min_max_and_last(store: TimeSeriesStore) -> None:
    hour = NOW_MS - (NOW_MS % HOUR_MS) - HOUR_MS
    write(store, [agg(hour + i * MINUTE_MS, "CERN", v=float(i)) for i in range(60)])
    expected = {"count": 60.0, "sum": 1770.0, "min": 0.0, "max": 59.0, "last": 59.0, "mean": 29.5}
    for aggregate, value in expected.items():
        result = read(store, "1h", "v", aggregate)
        assert result.series[0].values.decode() == [value], aggregate


def test_group_by_and_filters(store: TimeSeriesStore) -> None:
    ts = NOW_MS - HOUR_MS
    write(store, [agg(ts, "CERN", jobs=1), agg(ts, "BNL", jobs=2), agg(ts, "FZK", jobs=4)])
    grouped = read(store, "1h", "jobs", "sum", group_by=["site"])
    assert {s.tags["site"]: s.values.decode() for s in grouped.series} == {
        "CERN": [1.0],
        "BNL": [2.0],
        "FZK": [4.0],
    }
    filtered = read(store, "1h", "jobs", "sum", where={"site": ["CERN", "FZK"]})
    assert [s.values.decode() for s in filtered.series] == [[5.0]]


def test_late_data_beyond_raw_retention_is_merged_into_the_kept_bin(
    store: TimeSeriesStore, clock: Clock
) -> None:
    old = NOW_MS - 3 * DAY_MS
    write(store, [(Point("jobs_agg", {}, {"jobs": 1}, old, False), "a")])
    assert store.enforce_retention() == 1
    write(store, [(Point("jobs_agg", {}, {"jobs": 1}, old + 1000, False), "b")])
    query = Query("jobs_agg", old - HOUR_MS, old + HOUR_MS, ["jobs"], aggregate="count", tier="10m")
    assert run_query(store, query).series[0].values.decode() == [2.0]


def test_retention_deletes_per_tier(store: TimeSeriesStore, clock: Clock) -> None:
    write(store, [agg(NOW_MS - 40 * DAY_MS, "CERN", jobs=1), agg(NOW_MS - HOUR_MS, "CERN", jobs=1)])
    store.enforce_retention()
    assert store.count_rows(BY_NAME["raw"]) == 1
    assert store.count_rows(BY_NAME["10m"]) == 1
    assert store.count_rows(BY_NAME["1h"]) == 2


def test_series_survive_a_reopen(tmp_path: Path, clock: Clock) -> None:
    first = TimeSeriesStore(tmp_path / "ts.duckdb", RETENTION, clock)
    write(first, [agg(NOW_MS - HOUR_MS, "CERN", jobs=3)])
    first.close()
    second = TimeSeriesStore(tmp_path / "ts.duckdb", RETENTION, clock)
    assert [s.tags for s in second.series_of("jobs_agg")] == [{"site": "CERN"}]
    assert second.fields_of("jobs_agg") == ["jobs"]
