"""The time that components read, lent to them by the runtime through their ``Context``.

Components take wall-clock and interval time from ``context.clock`` rather than from the
``time`` module, so a test (or a replay) gives them another clock without patching anything.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch, and a monotonic clock for intervals."""

    def time(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean something)."""
        ...


class SystemClock:
    """This host's clocks."""

    def time(self) -> float:
        """:func:`time.time`."""
        return time.time()

    def monotonic(self) -> float:
        """:func:`time.monotonic`."""
        return time.monotonic()


class OffsetClock(SystemClock):
    """This host's wall clock moved by ``offset_s`` (a host whose clock is off)."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        """This host's time plus the offset."""
        return time.time() + self.offset_s


SYSTEM_CLOCK: Clock = SystemClock()
