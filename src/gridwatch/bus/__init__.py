"""The durable bus: topics of envelope lines, consumer groups with committed offsets.

Everything outside this package sees only the :class:`Bus` protocol and gets a bus from
:func:`open_bus`, which builds the one that the pipeline file's ``bus: {type: ...}`` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gridwatch.bus.base import Bus, Entry, GroupState, Slice, TopicInfo
from gridwatch.bus.sqlite import SqliteBus

if TYPE_CHECKING:
    from gridwatch.config.pipeline import BusSettings

BUS_FILE = "bus.db"
"""The embedded bus's file under the data dir."""


def open_bus(settings: BusSettings | None, data_dir: Path) -> Bus:
    """The bus that ``settings`` describe (the embedded SQLite bus by default)."""
    durability = "full" if settings is None else settings.durability
    return SqliteBus(data_dir / BUS_FILE, durability)


def existing_bus(data_dir: Path) -> Bus:
    """The bus a pipeline left in ``data_dir``; a clear error when there is none."""
    from gridwatch.errors import GridwatchError

    path = data_dir / BUS_FILE
    if not path.is_file():  # opening it would create it, and hide a mistyped --data-dir
        raise GridwatchError(f"no bus at {path}")
    return open_bus(None, data_dir)


__all__ = [
    "BUS_FILE",
    "Bus",
    "Entry",
    "GroupState",
    "Slice",
    "SqliteBus",
    "TopicInfo",
    "existing_bus",
    "open_bus",
]
