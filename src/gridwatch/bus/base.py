"""The bus interface that the runtime, jobs and tools depend on.

A bus keeps topics of envelope lines. Each appended batch carries its ``origin`` (the pipeline
component that produced it) so that a consumer can take only what its inputs produced. Consumer
groups commit offsets, optionally together with a piece of JSON state, in one atomic step; a
source's position is stored atomically with the records it produced.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, overload

Entry = tuple[str, str, Sequence[bytes]]
"""What to append: (topic, origin, lines)."""


class JoinedLines(Sequence[bytes]):
    """Lines kept as one newline-joined buffer, as a batch encoder produces them.

    A bus stores the buffer as it is instead of joining the lines again; the lines themselves
    are split out only if somebody asks for them.
    """

    def __init__(self, payload: bytes, size: int) -> None:
        self.payload = payload
        self.size = size

    @cached_property
    def lines(self) -> list[bytes]:
        """The separate lines."""
        return self.payload.split(b"\n") if self.size else []

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        return self.lines[index]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.lines)

    def __eq__(self, other: object) -> bool:
        """Equal to the same lines, however held (a list compares equal too)."""
        if isinstance(other, JoinedLines):
            return self.size == other.size and self.payload == other.payload
        if isinstance(other, list | tuple):
            return self.lines == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which have no hash

    @staticmethod
    def of(parts: Sequence[Sequence[bytes]]) -> JoinedLines:
        """Several runs of lines as one (a single run is not copied)."""
        if len(parts) == 1 and isinstance(parts[0], JoinedLines):
            return parts[0]
        size = sum(map(len, parts))
        return JoinedLines(b"\n".join(joined(part) for part in parts if len(part)), size)


def joined(lines: Sequence[bytes]) -> bytes:
    """``lines`` joined by newlines (without copying when they already are)."""
    return lines.payload if isinstance(lines, JoinedLines) else b"\n".join(lines)


@dataclass(frozen=True)
class Slice:
    """Consecutive lines of one topic, all from one origin, starting at ``offset``."""

    topic: str
    offset: int
    origin: str
    lines: Sequence[bytes]

    @property
    def end(self) -> int:
        """The offset just after the last line."""
        return self.offset + len(self.lines)


@dataclass(frozen=True)
class TopicInfo:
    """What a topic holds: offsets ``[start, end)`` and their size on disk."""

    name: str
    start: int
    end: int
    bytes: int


@dataclass
class GroupState:
    """A consumer group's committed offsets per topic and its checkpointed state."""

    offsets: dict[str, int] = field(default_factory=dict)
    state: Any = None


class Bus(Protocol):
    """A durable, ordered log of topics with consumer groups."""

    def append(
        self,
        entries: Iterable[Entry],
        position: tuple[str, Any] | None = None,
        commit: tuple[str, Mapping[str, int], Any] | None = None,
    ) -> None:
        """Append ``(topic, origin, lines)`` entries durably, all or none.

        ``position`` (source id, JSON state) and ``commit`` (group, offsets, state) are stored
        in the same atomic step, so a job's outputs and its consumed offsets never part. A
        state may be a ``msgspec.Raw`` holding JSON its owner encoded; it is read back decoded.
        """
        ...

    def topics_from(self, origins: Collection[str]) -> list[str]:
        """The topics that any of these origins ever appended to."""
        ...

    def read(self, topic: str, offset: int, max_lines: int) -> list[Slice]:
        """Lines from ``offset`` on (or from the oldest retained one), about ``max_lines``."""
        ...

    def topics(self) -> dict[str, TopicInfo]:
        """Every topic with its offsets."""
        ...

    def committed(self, group: str) -> GroupState:
        """The group's committed offsets and state (empty for a new group)."""
        ...

    def commit(self, group: str, offsets: Mapping[str, int], state: Any = None) -> None:
        """Store offsets (the next offset to read per topic) and the group's state atomically."""
        ...

    def position(self, source: str) -> Any:
        """The last stored position of a source, or ``None``."""
        ...

    def lag(self, group: str, topics: Collection[str]) -> int:
        """How many retained lines of these topics the group has not yet committed."""
        ...

    def enforce_retention(self, max_age_s: float | None, max_bytes: int | None) -> int:
        """Delete what is older or beyond the size per topic; return the lines deleted."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
