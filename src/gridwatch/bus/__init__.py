"""The durable bus: topics of envelope lines, consumer groups with committed offsets.

Everything outside this package sees only the :class:`Bus` protocol and gets a bus from
:func:`open_bus`, which builds the one that the pipeline file's ``bus: {type: ...}`` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gridwatch.bus.base import (
    AppendResult,
    Bus,
    Entry,
    GroupState,
    IdEntry,
    IdWindow,
    Slice,
    TopicInfo,
)
from gridwatch.bus.sqlite import SqliteBus

if TYPE_CHECKING:
    from gridwatch.config.pipeline import BusSettings

BUS_FILE = "bus.db"
"""The embedded bus's file under the data dir."""


def open_bus(settings: BusSettings | None, data_dir: Path) -> Bus:
    """The bus that ``settings`` describe (``None``: the embedded SQLite bus with its defaults
    in ``data_dir``). Every part of gridwatch opens its bus here."""
    if settings is None:
        return SqliteBus(data_dir / BUS_FILE)
    if settings.type != "sqlite":  # pragma: no cover - the settings admit no other kind yet
        raise ValueError(f"unknown bus type {settings.type!r}")
    return SqliteBus(
        data_dir / (settings.path or BUS_FILE), settings.durability, settings.id_window()
    )


def existing_bus(data_dir: Path) -> Bus:
    """The bus a pipeline left in ``data_dir``; a clear error when there is none."""
    from gridwatch.errors import GridwatchError

    path = data_dir / BUS_FILE
    if not path.is_file():  # opening it would create it, and hide a mistyped --data-dir
        raise GridwatchError(f"no bus at {path}")
    return open_bus(None, data_dir)


__all__ = [
    "BUS_FILE",
    "AppendResult",
    "Bus",
    "Entry",
    "GroupState",
    "IdEntry",
    "IdWindow",
    "Slice",
    "SqliteBus",
    "TopicInfo",
    "existing_bus",
    "open_bus",
]
