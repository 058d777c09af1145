"""Where archive files live: ``{root}/{producer}/{type_prefix}/{type}/{YYYY}/{MM}/{DD}/``.

Closed files are named ``{host}-{writer}-{sequence}.parquet``; while they are being written
they are ``.{name}.tmp`` (hidden, so Spark and Hive skip them, and never matched by a
``*.parquet`` glob).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gridwatch.archive.tables import DAY_MS

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Partition:
    """One archive directory: a dataset and one UTC day (days since the epoch)."""

    producer: str
    type_prefix: str
    type: str
    day: int

    def directory(self) -> Path:
        """The partition's path relative to the archive root."""
        date = _EPOCH + timedelta(days=self.day)
        return Path(
            self.producer, self.type_prefix, self.type, f"{date:%Y}", f"{date:%m}", f"{date:%d}"
        )


def safe_name(text: str) -> str:
    """``text`` usable in a file name (hosts and component ids)."""
    return _UNSAFE.sub("_", text) or "_"


def file_name(host: str, writer: str, sequence: int) -> str:
    """The name of a closed archive file."""
    return f"{safe_name(host)}-{safe_name(writer)}-{sequence:010d}.parquet"


def tmp_name(final_name: str) -> str:
    """The name of the file while it is being written."""
    return f".{final_name}.tmp"


@dataclass(frozen=True)
class ArchiveFilter:
    """Which archive files to read: datasets (``None`` = any) and a time range in UTC ms."""

    producer: str | None = None
    type_prefix: str | None = None
    type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def day_range(self) -> tuple[int | None, int | None]:
        """The first and last day that can hold matching records."""
        first = None if self.since_ms is None else self.since_ms // DAY_MS
        last = None if self.until_ms is None else (self.until_ms - 1) // DAY_MS
        return first, last


def archive_files(root: Path, where: ArchiveFilter) -> Iterator[tuple[Path, Partition]]:
    """Closed archive files that may hold matching records, in path order."""
    first, last = where.day_range()
    for producer in _children(root, where.producer):
        for prefix in _children(producer, where.type_prefix):
            for type_dir in _children(prefix, where.type):
                for day_dir, day in _days(type_dir, first, last):
                    partition = Partition(producer.name, prefix.name, type_dir.name, day)
                    for path in sorted(day_dir.glob("*.parquet")):
                        if not path.name.startswith("."):
                            yield path, partition


def _children(directory: Path, only: str | None) -> list[Path]:
    if only is not None:
        child = directory / only
        return [child] if child.is_dir() else []
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _days(type_dir: Path, first: int | None, last: int | None) -> Iterator[tuple[Path, int]]:
    for day_dir in sorted(type_dir.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]")):
        year, month, day_of_month = day_dir.parts[-3:]
        try:
            date = datetime(int(year), int(month), int(day_of_month), tzinfo=UTC)
        except ValueError:
            continue
        day = (date - _EPOCH).days
        if (first is None or day >= first) and (last is None or day <= last):
            yield day_dir, day
