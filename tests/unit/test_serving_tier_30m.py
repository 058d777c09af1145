"""The 30-minute tier: when the planner reads it, and that its bins obey the store's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridwatch.serving.points import Point
from gridwatch.serving.query import Query, QueryError, run_query
from gridwatch.serving.store import StagedPoints, TimeSeriesStore
from gridwatch.serving.tiers import BY_NAME, DAY_MS, HOUR_MS, MINUTE_MS, kept, plan

NOW_MS = 1_800_000_000_000 - (1_800_000_000_000 % DAY_MS) + 12 * HOUR_MS  # noon UTC
WITHOUT = {"raw": 48 * HOUR_MS, "10m": 35 * DAY_MS, "1h": 800 * DAY_MS, "1d": None}
WITH = {**WITHOUT, "30m": 35 * DAY_MS}


def clock() -> float:
    return NOW_MS / 1000


def write(store: TimeSeriesStore, points: list[Point]) -> None:
    staged = StagedPoints()
    for point in points:
        store.stage(staged, point, "")
    store.write(staged)


def agg(ts: int, **fields: float) -> Point:
    return Point("jobs_agg", {"site": "CERN"}, dict(fields), ts, True)


def read(store: TimeSeriesStore, tier: str, field: str, aggregate: str, bucket_ms: int) -> Query:
    start = NOW_MS - DAY_MS
    return Query(
        "jobs_agg",
        start,
        NOW_MS,
        [field],
        aggregate=aggregate,  # type: ignore[arg-type]
        tier=tier,
        max_points=DAY_MS // bucket_ms,
    )


def values(store: TimeSeriesStore, query: Query) -> list[float]:
    result = run_query(store, query, {"status_code"})
    return [v for s in result.series for v in s.values.decode()]


def test_the_tier_is_kept_only_when_the_retention_names_it() -> None:
    assert [t.name for t in kept(WITHOUT)] == ["raw", "10m", "1h", "1d"]
    assert [t.name for t in kept(WITH)] == ["raw", "10m", "30m", "1h", "1d"]
    with pytest.raises(ValueError, match="not kept"):
        plan(NOW_MS - DAY_MS, NOW_MS, 10, NOW_MS, WITHOUT, forced="30m")


def test_thirty_days_at_a_thousand_points_reads_half_hour_bins_in_hour_buckets() -> None:
    chosen = plan(NOW_MS - 30 * DAY_MS, NOW_MS, 1000, NOW_MS, WITH)
    assert chosen.tier.name == "30m"
    assert chosen.bucket_ms == HOUR_MS  # 43.2 min asked for, rounded up to two bins
    assert 30 * DAY_MS / chosen.bucket_ms <= 1000


def test_finer_resolutions_still_read_ten_minute_bins() -> None:
    chosen = plan(NOW_MS - 2 * DAY_MS, NOW_MS, 100, NOW_MS, WITH)  # 28.8 min asked for
    assert (chosen.tier.name, chosen.bucket_ms) == ("10m", 30 * MINUTE_MS)


def test_beyond_its_retention_the_hourly_tier_answers() -> None:
    start = NOW_MS - 60 * DAY_MS
    assert plan(start, start + 30 * DAY_MS, 1000, NOW_MS, WITH).tier.name == "1h"


@pytest.fixture
def store(tmp_path: Path) -> TimeSeriesStore:
    return TimeSeriesStore(tmp_path / "ts.duckdb", WITH, clock)


def test_half_hour_bins_keep_count_sum_min_max_and_last(store: TimeSeriesStore) -> None:
    start = NOW_MS - (NOW_MS % HOUR_MS) - 2 * HOUR_MS
    write(store, [agg(start + i * MINUTE_MS, v=float(i)) for i in range(60)])
    expected = {
        "count": [30.0, 30.0],
        "sum": [435.0, 1335.0],
        "min": [0.0, 30.0],
        "max": [29.0, 59.0],
        "last": [29.0, 59.0],
        "mean": [14.5, 44.5],
    }
    for aggregate, wanted in expected.items():
        query = read(store, "30m", "v", aggregate, 30 * MINUTE_MS)
        assert values(store, query) == wanted, aggregate
    # The hourly bin is now built from the two half hours: still exact.
    assert values(store, read(store, "1h", "v", "mean", HOUR_MS)) == [29.5]
    assert values(store, read(store, "1h", "v", "last", HOUR_MS)) == [59.0]


def test_a_revised_bin_replaces_its_older_revision(store: TimeSeriesStore) -> None:
    window = NOW_MS - 2 * HOUR_MS
    write(store, [agg(window, jobs=10), agg(window + 10 * MINUTE_MS, jobs=5)])
    write(store, [agg(window, jobs=12)])
    assert values(store, read(store, "30m", "jobs", "sum", DAY_MS)) == [17.0]
    assert store.count_rows(BY_NAME["30m"]) == 1


def test_worst_state_survives_the_half_hour_bins(store: TimeSeriesStore) -> None:
    start = NOW_MS - DAY_MS
    points = [agg(start + i * MINUTE_MS, status_code=0) for i in range(0, 1440, 5)]
    points.append(agg(start + 700 * MINUTE_MS, status_code=2))
    write(store, points)
    result = run_query(store, read(store, "30m", "status_code", "mean", 30 * MINUTE_MS))
    assert max(result.series[0].values.decode()) < 1.0  # without the status rule: averaged
    worst = values(store, read(store, "30m", "status_code", "mean", 30 * MINUTE_MS))
    assert max(worst) == 2.0
    assert worst.count(2.0) == 1


def test_a_store_that_starts_keeping_the_tier_fills_it_from_ten_minute_bins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ts.duckdb"
    before = TimeSeriesStore(path, WITHOUT, clock)
    start = NOW_MS - (NOW_MS % HOUR_MS) - 2 * HOUR_MS
    write(before, [agg(start + i * MINUTE_MS, v=float(i)) for i in range(60)])
    with pytest.raises(QueryError, match="not kept"):
        run_query(before, read(before, "30m", "v", "sum", 30 * MINUTE_MS))
    before.close()

    after = TimeSeriesStore(path, WITH, clock)
    assert values(after, read(after, "30m", "v", "sum", 30 * MINUTE_MS)) == [435.0, 1335.0]
    assert values(after, read(after, "30m", "v", "last", 30 * MINUTE_MS)) == [29.0, 59.0]
    after.close()

    # Not kept again: the table goes, rather than going stale; keeping it again refills it.
    without = TimeSeriesStore(path, WITHOUT, clock)
    write(without, [agg(start + 60 * MINUTE_MS, v=100.0)])
    without.close()
    again = TimeSeriesStore(path, WITH, clock)
    assert values(again, read(again, "30m", "v", "sum", 30 * MINUTE_MS)) == [435.0, 1335.0, 100.0]


def test_retention_of_the_tier(tmp_path: Path) -> None:
    store = TimeSeriesStore(tmp_path / "ts.duckdb", {**WITH, "30m": 20 * DAY_MS}, clock)
    write(store, [agg(NOW_MS - 30 * DAY_MS, jobs=1), agg(NOW_MS - HOUR_MS, jobs=1)])
    store.enforce_retention()
    assert store.count_rows(BY_NAME["30m"]) == 1
    assert store.count_rows(BY_NAME["10m"]) == 2
    assert store.count_rows(BY_NAME["1h"]) == 2


def test_field_names_follow_writes_and_retention(tmp_path: Path) -> None:
    store = TimeSeriesStore(tmp_path / "ts.duckdb", {**WITH, "1d": 10 * DAY_MS}, clock)
    write(store, [agg(NOW_MS - 20 * DAY_MS, old=1), agg(NOW_MS - HOUR_MS, jobs=1)])
    assert store.fields_of("jobs_agg") == ["jobs", "old"]
    store.enforce_retention()
    assert store.fields_of("jobs_agg") == ["jobs"]
    assert store.fields_of("unknown") == []
