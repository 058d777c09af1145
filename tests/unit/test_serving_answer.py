"""How bucket rows become series: in time order, each in its group, sparse or dense."""

from __future__ import annotations

from pathlib import Path

from gridwatch.serving.points import Point
from gridwatch.serving.query import Query, run_query
from gridwatch.serving.store import StagedPoints, TimeSeriesStore
from gridwatch.serving.tiers import DAY_MS, HOUR_MS, MINUTE_MS

NOW_MS = 1_800_000_000_000 - (1_800_000_000_000 % DAY_MS) + 12 * HOUR_MS
RETENTION = {"raw": 48 * HOUR_MS, "10m": 35 * DAY_MS, "30m": 35 * DAY_MS, "1h": None, "1d": None}


def test_series_come_back_in_time_order_whether_buckets_are_sparse_or_dense(
    tmp_path: Path,
) -> None:
    store = TimeSeriesStore(tmp_path / "ts.duckdb", RETENTION, lambda: NOW_MS / 1000)
    staged = StagedPoints()
    # Written newest first and interleaved, so that nothing arrives in order by chance.
    expected: dict[str, list[tuple[int, float]]] = {"a": [], "b": [], "c": []}
    for minute in range(300, 0, -7):
        for number, host in enumerate(expected):
            if (minute + number) % 3 == 0:
                continue  # gaps, different per host
            ts = NOW_MS - minute * MINUTE_MS
            value = minute + number / 10
            store.stage(staged, Point("m", {"host": host}, {"v": value}, ts, True), "")
            expected[host].append((ts, value))
    store.write(staged)
    for pairs in expected.values():
        pairs.sort()
    start = NOW_MS - 6 * HOUR_MS
    # 360 one-minute slots per host for about 30 points each: laid out densely.
    dense = run_query(store, Query("m", start, NOW_MS, ["v"], ["host"], tier="raw", max_points=360))
    # 21,600 one-second slots each: sorted instead.
    sparse = run_query(
        store, Query("m", start, NOW_MS, ["v"], ["host"], tier="raw", max_points=21_600)
    )
    for result in (dense, sparse):
        got = {
            s.tags["host"]: list(zip(s.times.decode(), s.values.decode(), strict=True))
            for s in result.series
        }
        assert got == expected
    assert dense.plan.bucket_ms == MINUTE_MS and sparse.plan.bucket_ms == 1000
