"""Token buckets per producer for the http source, on a clock the test moves."""

from __future__ import annotations

import pytest

from gridwatch.sources.http.ratelimit import MAX_IDLE_BUCKETS, ProducerRateLimits


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock, default: float | None = None, burst_s: float = 1.0) -> ProducerRateLimits:
    return ProducerRateLimits({"panda": 10.0}, default, burst_s, clock)


def test_a_full_bucket_takes_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = limits(clock, burst_s=2.0)  # 10/s, holds 20
    assert buckets.take({"panda": 20}) is None
    throttled = buckets.take({"panda": 5})
    assert throttled is not None
    assert throttled.producers == ["panda"]
    assert throttled.retry_after_s == pytest.approx(0.5)
    assert throttled.retry_after_header == "1"
    clock.now += 0.5
    assert buckets.take({"panda": 5}) is None
    assert buckets.take({"panda": 1}) is not None


def test_producers_without_a_limit_are_never_throttled_unless_a_default_applies() -> None:
    clock = Clock()
    assert limits(clock).take({"fts": 1_000_000}) is None
    with_default = limits(clock, default=2.0)
    assert with_default.rate_of("fts") == 2.0 and with_default.rate_of("panda") == 10.0
    assert with_default.take({"fts": 2}) is None
    assert with_default.take({"fts": 1}) is not None
    assert not ProducerRateLimits({}, None, 1.0, clock).enabled


def test_a_request_is_taken_from_every_bucket_or_from_none() -> None:
    clock = Clock()
    buckets = limits(clock, default=5.0)
    assert buckets.take({"fts": 5}) is None  # fts is now empty
    throttled = buckets.take({"panda": 4, "fts": 1})
    assert throttled is not None and throttled.producers == ["fts"]
    # panda's 4 were not taken: its whole bucket is still there.
    assert buckets.take({"panda": 10}) is None


def test_a_request_larger_than_the_bucket_passes_when_full_and_leaves_a_debt() -> None:
    clock = Clock()
    buckets = limits(clock)  # 10/s, holds 10
    assert buckets.take({"panda": 35}) is None
    throttled = buckets.take({"panda": 1})
    assert throttled is not None
    assert throttled.retry_after_s == pytest.approx(2.6)  # 25 owed + 1 wanted, at 10/s
    assert throttled.retry_after_header == "3"
    clock.now += 2.6
    assert buckets.take({"panda": 1}) is None


def test_full_buckets_are_forgotten_when_there_are_too_many() -> None:
    clock = Clock()
    buckets = ProducerRateLimits({}, 1.0, 1.0, clock)
    for n in range(MAX_IDLE_BUCKETS):
        assert buckets.take({f"p{n}": 1}) is None
    clock.now += 1.0  # every bucket is full again
    assert buckets.take({"new": 1}) is None
    assert len(buckets) == 1
