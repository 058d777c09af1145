"""The bus interface that the runtime, jobs and tools depend on.

A bus keeps topics of envelope lines. Each appended batch carries its ``origin`` (the pipeline
component that produced it) so that a consumer can take only what its inputs produced. Consumer
groups commit offsets, optionally together with a piece of JSON state, in one atomic step; a
source's position is stored atomically with the records it produced.

Appends are idempotent by record id: lines passed with their records' ``_id`` (an
:class:`IdEntry`) are refused when their topic already took that id within the bus's id window
(:class:`IdWindow`), so a sender's resend after a lost answer, a replay or a restart never makes
a second copy of a record.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, Protocol, overload

DEFAULT_ID_WINDOW_S = 7 * 86400.0
DEFAULT_ID_WINDOW_IDS = 10_000_000


class IdEntry(NamedTuple):
    """Lines to append with their records' ids: ``ids[i]`` is the ``_id`` of ``lines[i]``.

    A line whose id its topic already took within the id window is refused, and so is a second
    copy of an id within the entry (the first copy is appended).
    """

    topic: str
    origin: str
    lines: Sequence[bytes]
    ids: Sequence[str]


Entry = tuple[str, str, Sequence[bytes]] | IdEntry
"""What to append: ``(topic, origin, lines)``, appended unchecked (dead letters, job outputs
without ids), or an :class:`IdEntry`."""


@dataclass(frozen=True)
class IdWindow:
    """How long and how many ids a bus remembers to refuse second copies (0: none at all).

    An id is refused while it is among the newest ``ids`` ids of all topics and taken less than
    ``seconds`` ago; it may be forgotten once either is exceeded, at the latest when
    :meth:`Bus.enforce_retention` next runs, and may be forgotten with their records when
    retention deletes those.
    """

    seconds: float = DEFAULT_ID_WINDOW_S
    ids: int = DEFAULT_ID_WINDOW_IDS

    @property
    def enabled(self) -> bool:
        """Whether ids are checked at all."""
        return self.seconds > 0 and self.ids > 0


@dataclass(frozen=True)
class AppendResult:
    """What an append did, entry by entry in the order given."""

    appended: tuple[int, ...] = ()
    """Lines appended."""
    refused: tuple[int, ...] = ()
    """Lines refused: their record's id was already taken (0 for entries without ids)."""

    @property
    def duplicates(self) -> int:
        """Lines refused in all."""
        return sum(self.refused)


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
    ) -> AppendResult:
        """Append entries durably, all or none; say what was appended and what refused.

        ``position`` (source id, JSON state) and ``commit`` (group, offsets, state) are stored
        in the same atomic step, so a job's outputs and its consumed offsets never part; they
        are stored even when every line was refused as a duplicate. A state may be a
        ``msgspec.Raw`` holding JSON its owner encoded; it is read back decoded. Offsets stay
        dense: refused lines take none.
        """
        ...

    def duplicates_refused(self) -> int:
        """Lines this bus object refused as duplicates since it was opened."""
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
        """Delete what is older or beyond the size per topic; return the lines deleted.

        Also forgets the ids beyond the id window (whose time is bounded by ``max_age_s``).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
