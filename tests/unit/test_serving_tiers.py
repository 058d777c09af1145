"""Which tier a query reads, and how wide its buckets are."""

from __future__ import annotations

from gridwatch.serving.tiers import DAY_MS, HOUR_MS, MINUTE_MS, plan

NOW = 1_800_000_000_000
RETENTION = {"raw": 48 * HOUR_MS, "10m": 35 * DAY_MS, "1h": 800 * DAY_MS, "1d": None}


def test_a_year_at_a_thousand_points_reads_hourly_bins_in_nine_hour_buckets() -> None:
    chosen = plan(NOW - 365 * DAY_MS, NOW, 1000, NOW, RETENTION)
    assert chosen.tier.name == "1h"
    assert chosen.bucket_ms == 9 * HOUR_MS  # 8.76 h asked for, rounded up to whole bins


def test_thirty_days_at_a_thousand_points_needs_ten_minute_bins() -> None:
    chosen = plan(NOW - 30 * DAY_MS, NOW, 1000, NOW, RETENTION)
    assert chosen.tier.name == "10m"
    assert chosen.bucket_ms == 50 * MINUTE_MS
    assert 30 * DAY_MS / chosen.bucket_ms <= 1000


def test_thirty_days_at_seven_hundred_points_can_use_hourly_bins() -> None:
    assert plan(NOW - 30 * DAY_MS, NOW, 700, NOW, RETENTION).tier.name == "1h"


def test_six_hours_reads_raw_points_while_they_are_kept() -> None:
    chosen = plan(NOW - 6 * HOUR_MS, NOW, 300, NOW, RETENTION)
    assert chosen.tier.name == "raw"
    assert chosen.bucket_ms == 72_000


def test_expired_tiers_are_skipped_for_old_ranges() -> None:
    # Six hours, but two months ago: raw and 10m no longer hold it.
    start = NOW - 60 * DAY_MS
    chosen = plan(start, start + 6 * HOUR_MS, 300, NOW, RETENTION)
    assert chosen.tier.name == "1h"
    assert chosen.bucket_ms == HOUR_MS


def test_a_range_older_than_every_tier_reads_the_longest_kept() -> None:
    retention = {"raw": HOUR_MS, "10m": DAY_MS, "1h": 2 * DAY_MS, "1d": 10 * DAY_MS}
    assert plan(NOW - 100 * DAY_MS, NOW, 10, NOW, retention).tier.name == "1d"


def test_a_forced_tier_is_used_as_asked() -> None:
    chosen = plan(NOW - DAY_MS, NOW, 1000, NOW, RETENTION, forced="1d")
    assert chosen.tier.name == "1d"
    assert chosen.bucket_ms == DAY_MS
