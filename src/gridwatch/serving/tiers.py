"""The resolution tiers of the time-series store and how a query picks one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Tier:
    """A resolution: ``raw`` keeps every point, the others one row per bin of ``width_ms``."""

    name: str
    width_ms: int
    table: str


RAW = Tier("raw", 0, "points")
TIERS: tuple[Tier, ...] = (
    RAW,
    Tier("10m", 10 * MINUTE_MS, "rollup_10m"),
    Tier("30m", 30 * MINUTE_MS, "rollup_30m"),
    Tier("1h", HOUR_MS, "rollup_1h"),
    Tier("1d", DAY_MS, "rollup_1d"),
)
ROLLUPS = TIERS[1:]
BY_NAME = {tier.name: tier for tier in TIERS}
RAW_MIN_BUCKET_MS = 1000
OPTIONAL = frozenset({"30m"})
"""Tiers a store keeps only when its retention names them (``None`` there: forever).

The others are always kept, a missing retention meaning forever, as before these existed."""


def kept(retention_ms: Mapping[str, int | None]) -> tuple[Tier, ...]:
    """The tiers a store with ``retention_ms`` keeps, finest first."""
    return tuple(t for t in TIERS if t.name not in OPTIONAL or t.name in retention_ms)


@dataclass(frozen=True)
class Plan:
    """The tier a query reads and the width of the buckets it returns."""

    tier: Tier
    bucket_ms: int


def covers(tier: Tier, start_ms: int, now_ms: int, retention_ms: Mapping[str, int | None]) -> bool:
    """Whether ``tier`` still holds data from ``start_ms`` on, given its retention."""
    keep = retention_ms.get(tier.name)
    return keep is None or start_ms >= now_ms - keep


def plan(
    start_ms: int,
    end_ms: int,
    max_points: int,
    now_ms: int,
    retention_ms: Mapping[str, int | None],
    *,
    forced: str | None = None,
) -> Plan:
    """The coarsest tier that still gives the resolution asked for.

    The resolution asked for is ``(end - start) / max_points``. Among the tiers whose retention
    covers ``start``, the coarsest one whose bins are no wider than that is chosen; when even
    the finest is too coarse, the finest that covers the range; when none covers it, the
    coarsest (it keeps the longest). Only the tiers the store keeps (:func:`kept`) are
    candidates; a forced tier it does not keep is a ``ValueError``. Buckets are a whole number
    of the tier's bins, at least as wide as the resolution asked for, so that a series never
    has more than ``max_points``.
    """
    span = max(1, end_ms - start_ms)
    wanted = span / max(1, max_points)
    candidates = kept(retention_ms)
    if forced is not None:
        tier = BY_NAME[forced]
        if tier not in candidates:
            raise ValueError(f"tier {forced!r} is not kept by this store")
    else:
        covering = [t for t in candidates if covers(t, start_ms, now_ms, retention_ms)]
        fine_enough = [t for t in covering if t.width_ms <= wanted]
        if fine_enough:
            tier = fine_enough[-1]
        elif covering:
            tier = covering[0]
        else:
            tier = candidates[-1]
    if tier.width_ms == 0:
        bucket = max(RAW_MIN_BUCKET_MS, math.ceil(wanted / RAW_MIN_BUCKET_MS) * RAW_MIN_BUCKET_MS)
    else:
        bucket = max(1, math.ceil(wanted / tier.width_ms)) * tier.width_ms
    return Plan(tier, bucket)
