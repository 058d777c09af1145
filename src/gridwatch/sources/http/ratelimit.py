"""Records per second per producer: token buckets, taken from all at once or not at all."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_IDLE_BUCKETS = 10_000
"""Past this many buckets, the full ones are forgotten (a full bucket is as good as new)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Throttled:
    """A request over the limit: the producers that are, and when to try again."""

    producers: list[str]
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, rounded up (at least 1)."""
        return str(max(1, math.ceil(self.retry_after_s)))


class ProducerRateLimits:
    """A token bucket of records for each producer that has a limit.

    A producer's bucket holds ``rate * burst_s`` records and refills at ``rate`` per second.
    A request may take more records than the bucket holds when the bucket is full; the bucket
    then goes into debt, so the average rate holds however the records are split into requests.
    """

    def __init__(
        self,
        rates: Mapping[str, float],
        default_rate: float | None,
        burst_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = dict(rates)
        self.default_rate = default_rate
        self.burst_s = burst_s
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        """Whether any producer has a limit."""
        return bool(self.rates) or self.default_rate is not None

    def __len__(self) -> int:
        """How many producers have a bucket right now."""
        return len(self._buckets)

    def rate_of(self, producer: str) -> float | None:
        """Records per second that ``producer`` may send (``None``: no limit)."""
        return self.rates.get(producer, self.default_rate)

    def take(self, counts: Mapping[str, int]) -> Throttled | None:
        """Take ``counts`` (records per producer) from the buckets, all of them or none.

        Returns ``None`` when taken, else which producers are over their limit and how long
        until all of them would have room for this request.
        """
        now = self.clock()
        over: list[str] = []
        wait_s = 0.0
        taking: list[tuple[_Bucket, int]] = []
        for producer, count in sorted(counts.items()):
            rate = self.rate_of(producer)
            if rate is None or count <= 0:
                continue
            capacity = max(rate * self.burst_s, 1.0)
            bucket = self._refilled(producer, rate, capacity, now)
            need = min(count, capacity)
            if bucket.tokens < need:
                over.append(producer)
                wait_s = max(wait_s, (need - bucket.tokens) / rate)
            taking.append((bucket, count))
        if over:
            return Throttled(over, wait_s)
        for bucket, count in taking:
            bucket.tokens -= count
        return None

    def _refilled(self, producer: str, rate: float, capacity: float, now: float) -> _Bucket:
        bucket = self._buckets.get(producer)
        if bucket is None:
            if len(self._buckets) >= MAX_IDLE_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[producer] = _Bucket(capacity, now)
            return bucket
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def _forget_full(self, now: float) -> None:
        for producer, bucket in list(self._buckets.items()):
            rate = self.rate_of(producer) or 0.0
            full = max(rate * self.burst_s, 1.0)
            if bucket.tokens + (now - bucket.updated) * rate >= full:
                del self._buckets[producer]
