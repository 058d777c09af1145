"""Reading the bus as a consumer group: the topics of some origins, at the group's offsets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from gridwatch.bus.base import Bus, JoinedLines

log = logging.getLogger(__name__)


@dataclass
class Polled:
    """Lines of one topic taken from the bus, and the offset to commit once they are handled.

    ``lost`` counts lines that retention deleted before this group read them.
    """

    topic: str
    lines: Sequence[bytes]
    end: int
    lost: int = 0


class BusReader:
    """Follows the topics that some origins write to, for one consumer group.

    Lines of other origins sharing a topic are skipped; offsets only move forward when the
    caller says what it has handled (:meth:`advance`) and commit only when it says so.
    """

    def __init__(
        self,
        bus: Bus,
        group: str,
        origins: Collection[str],
        max_lines: int,
        wants: Callable[[str], bool] = lambda topic: True,
    ) -> None:
        self.bus = bus
        self.group = group
        self.origins = set(origins)
        self.max_lines = max_lines
        self.wants = wants
        self.offsets: dict[str, int] = {}
        self.uncommitted = False

    async def load(self) -> Any:
        """Read the committed offsets; return the group's checkpointed state."""
        committed = await asyncio.to_thread(self.bus.committed, self.group)
        self.offsets = dict(committed.offsets)
        return committed.state

    def followed(self) -> list[str]:
        """The topics this group follows now (new ones appear as origins write them)."""
        return [t for t in self.bus.topics_from(self.origins) if self.wants(t)]

    def pending(self) -> int:
        """Lines of the followed topics not yet committed by this group."""
        topics = self.followed()
        return self.bus.lag(self.group, topics) if topics else 0

    async def topics(self) -> list[str]:
        """:meth:`followed`, in a worker thread."""
        return await asyncio.to_thread(self.followed)

    async def poll(self, topic: str) -> Polled | None:
        """The next lines of ``topic`` for this group, or ``None`` when it is caught up."""
        offset = self.offsets.get(topic, 0)
        slices = await asyncio.to_thread(self.bus.read, topic, offset, self.max_lines)
        if not slices:
            return None
        lost = max(0, slices[0].offset - offset)
        if lost:
            log.warning(
                "%s: retention deleted %d lines of %s before they were read",
                self.group,
                lost,
                topic,
            )
        lines = JoinedLines.of([piece.lines for piece in slices if piece.origin in self.origins])
        return Polled(topic, lines, slices[-1].end, lost)

    async def each_topic(self) -> AsyncIterator[Polled]:
        """One poll of every followed topic that has new lines, one topic at a time."""
        for topic in await self.topics():
            polled = await self.poll(topic)
            if polled is not None:
                yield polled

    def advance(self, polled: Polled) -> None:
        """Mark ``polled`` as handled: its offset is committed with the next commit."""
        self.offsets[polled.topic] = polled.end
        self.uncommitted = True

    async def commit(self, state: Any = None) -> None:
        """Store the handled offsets (and ``state``) atomically."""
        await asyncio.to_thread(self.bus.commit, self.group, dict(self.offsets), state)
        self.uncommitted = False

    async def lag(self) -> int:
        """:meth:`pending`, in a worker thread."""
        return await asyncio.to_thread(self.pending)
