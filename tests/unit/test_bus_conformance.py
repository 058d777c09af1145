"""The embedded SQLite bus passes the bus contract (tests/bus_conformance.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridwatch.bus import Bus, IdWindow, open_bus
from gridwatch.config.pipeline import BusSettings
from tests.bus_conformance import BusContract, BusFactory


def sqlite_bus(place: Path, window: IdWindow) -> Bus:
    """The SQLite bus in ``place``, opened as a pipeline file would open it."""
    settings = BusSettings(dedup_window_s=window.seconds, dedup_window_ids=window.ids)
    return open_bus(settings, place)


@pytest.fixture(params=[sqlite_bus], ids=["sqlite"])
def factory(request: pytest.FixtureRequest) -> BusFactory:
    return request.param  # type: ignore[no-any-return]


class TestSqliteBus(BusContract):
    """Every contract test, on SQLite."""
