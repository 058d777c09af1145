"""Event-time progress of binned jobs: watermark, allowed lateness and revisions.

The watermark is the latest event time seen minus ``watermark_delay``. A bin is emitted (as
revision 1) once the watermark passes its end. A record arriving later that still touches a
kept bin updates it, and the bin is emitted again with the next revision, under the same
``_id``, so sinks that upsert keep the newest. A bin is kept for ``allowed_lateness`` after
the watermark passed its end (the *horizon*); a record whose first bin lies before the horizon
is too late: it goes to the correction topic whole (nothing of it is applied), never dropped.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from gridwatch.record import canonical_json


def canonical_keys(keys: tuple[Any, ...]) -> bytes:
    """The canonical JSON of a group's key tuple (groups recur in every bin: cached)."""
    # The types are part of the cache key: 1, 1.0 and True are equal but encode differently.
    return _canonical_keys(keys, tuple(map(type, keys)))


@functools.lru_cache(maxsize=1 << 16)
def _canonical_keys(keys: tuple[Any, ...], _types: tuple[type, ...]) -> bytes:
    return canonical_json(list(keys))


class Watermark:
    """Event-time progress: the watermark, the horizon of kept bins, and lateness tests."""

    def __init__(self, bin_ms: int, delay_ms: int, lateness_ms: int) -> None:
        self.bin_ms = bin_ms
        self.delay_ms = delay_ms
        self.lateness_ms = lateness_ms
        self.max_event_ms: int | None = None

    @property
    def watermark(self) -> int | None:
        """Bins ending at or before this are complete (``None`` before any input)."""
        return None if self.max_event_ms is None else self.max_event_ms - self.delay_ms

    @property
    def horizon(self) -> int | None:
        """Bins ending at or before this are final and no longer kept."""
        mark = self.watermark
        return None if mark is None else mark - self.lateness_ms

    def too_late(self, first_bin_start: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which records start in a bin that is already final."""
        horizon = self.horizon
        if horizon is None:
            return np.zeros(len(first_bin_start), dtype=bool)
        return np.asarray(first_bin_start + self.bin_ms <= horizon)

    def late(self, event_bin_start: npt.NDArray[np.int64]) -> int:
        """How many records report into a bin that was already closed (they revise it)."""
        mark = self.watermark
        if mark is None:
            return 0
        return int(np.count_nonzero(event_bin_start + self.bin_ms <= mark))

    def observe(self, event_ms: int) -> None:
        """Move the watermark with the latest event time seen."""
        if self.max_event_ms is None or event_ms > self.max_event_ms:
            self.max_event_ms = event_ms
