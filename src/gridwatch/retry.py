"""Waiting between attempts: capped exponential backoff, interruptible by a stop event."""

from __future__ import annotations

import asyncio
import contextlib


class Backoff:
    """Capped exponential pauses: initial, 2x, 4x, ... up to ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next(self) -> float:
        """The pause before the next attempt."""
        pause: float = min(self.maximum, self.initial * 2.0**self.attempt)
        self.attempt += 1
        return pause

    def reset(self) -> None:
        """Start again from the initial pause."""
        self.attempt = 0


async def sleep_unless(event: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when ``event`` is set; return whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
