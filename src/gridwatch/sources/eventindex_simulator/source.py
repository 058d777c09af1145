"""A simulated ATLAS EventIndex: modules that report their health, which changes over time.

Each module (the ones of seed 003: Hadoop cluster, import, open-ended production, ...) sends one
record every ``interval_s`` with its critical parameters, as the EventIndex monitoring scripts
do (``idb_tags`` / ``idb_fields`` set). Its health is a pure function of the module and the time
slot (``health_slot_s`` long): mostly fine, sometimes degraded, now and then down. A module that
is down may fall silent (so that freshness rules see it). On its first start the source can
backfill history, so that long time ranges have data at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import Field, field_validator

from gridwatch.components import Source, SourceBatch, SourceConfig
from gridwatch.record import Record, record_id

Values = dict[str, float | int | str]


def _hadoop(sev: int, r: float) -> Values:
    dead = (0, 1 + int(r * 2), 5 + int(r * 4))[sev]
    return {"live_nodes": 120 - dead, "dead_nodes": dead, "hdfs_used_fraction": 0.6 + 0.3 * r}


def _import(sev: int, r: float) -> Values:
    waiting = (int(50 * r), 400 + int(400 * r), 3000 + int(2000 * r))[sev]
    return {"files_waiting": waiting, "import_errors": sev * int(3 + 5 * r), "rate_hz": 40 * r}


def _production(sev: int, r: float) -> Values:
    return {
        "datasets_found": 200 + int(100 * r),
        "datasets_scheduled": 150 + int(50 * r) - 60 * sev,
        "datasets_skipped": int(10 * r) + 20 * sev,
        "errors": (0, 2 + int(3 * r), 20 + int(10 * r))[sev],
    }


def _triggerdb(sev: int, r: float) -> Values:
    return {"sync_lag_s": (30 + 60 * r, 900 + 600 * r, 7200 + 3600 * r)[sev], "errors": sev}


def _web(sev: int, r: float) -> Values:
    return {
        "response_ms": (80 + 60 * r, 900 + 500 * r, 5000.0)[sev],
        "http_status": (200, 200, 503)[sev],
    }


def _nightly(sev: int, r: float) -> Values:
    failed = (0, 1 + int(3 * r), 40 + int(20 * r))[sev]
    return {"tests_passed": 240 - failed, "tests_failed": failed}


def _picking(sev: int, r: float) -> Values:
    return {
        "success_fraction": (0.99, 0.9, 0.4)[sev] + 0.01 * r,
        "duration_s": 20 + 60 * sev + 10 * r,
    }


def _volumes(sev: int, r: float) -> Values:
    return {"catalogue_tb": 180 + 5 * r, "daily_growth_tb": 0.4 + 0.2 * r + 0.5 * sev}


MODULES: dict[str, tuple[str, Callable[[int, float], Values]]] = {
    "hadoop_cluster": ("aiatlas021", _hadoop),
    "ei_import": ("aiatlas034", _import),
    "open_ended_production": ("aiatlas017", _production),
    "trigger_db": ("aiatlas040", _triggerdb),
    "web_interface": ("aiatlas012", _web),
    "nightly_builds": ("aiatlas050", _nightly),
    "event_picking": ("aiatlas061", _picking),
    "data_volumes": ("aiatlas070", _volumes),
}
SILENT_WHEN_DOWN = frozenset({"trigger_db"})


class EventIndexSimulatorConfig(SourceConfig):
    """Settings of the ``eventindex_simulator`` source."""

    modules: list[str] = Field(
        default_factory=lambda: list(MODULES),
        min_length=1,
        description=f"Which modules report (of {', '.join(MODULES)}).",
    )
    producer: str = Field("eventindex", description="Producer of the records.")

    @field_validator("modules")
    @classmethod
    def _known(cls, modules: list[str]) -> list[str]:
        unknown = sorted(set(modules) - set(MODULES))
        if unknown:
            raise ValueError(f"unknown modules {unknown} (known: {', '.join(MODULES)})")
        return modules

    interval_s: float = Field(2.0, gt=0, description="Each module reports this often.")
    health_slot_s: float = Field(
        60.0, gt=0, description="A module's health stays the same for this long."
    )
    backfill_hours: float = Field(
        0.0, ge=0, description="On the first start, first send this much history."
    )
    backfill_step_s: float = Field(600.0, gt=0, description="Spacing of the backfilled records.")
    backfill_health_slot_s: float = Field(
        4 * 3600.0, gt=0, description="A module's health in the backfilled history lasts this long."
    )
    seed: int = Field(3, description="Varies the simulated health.")


def severity(module: str, slot: int, seed: int) -> tuple[int, float]:
    """The health (0 fine, 1 degraded, 2 down) of a module in a time slot, and a jitter in [0,1)."""
    digest = hashlib.blake2b(f"{seed}:{module}:{slot}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    jitter = (u * 7919) % 1.0
    return (0 if u < 0.72 else 1 if u < 0.9 else 2), jitter


class EventIndexSimulator(Source):
    """Reports simulated EventIndex module parameters."""

    Config = EventIndexSimulatorConfig
    config: EventIndexSimulatorConfig

    async def open(self, position: Any) -> None:
        self.backfilled = bool(position and position.get("backfilled"))

    def report(self, module: str, now_s: float, slot_s: float | None = None) -> Record | None:
        """The record that ``module`` sends at ``now_s`` (None while it is silent)."""
        cfg = self.config
        sev, jitter = severity(module, int(now_s // (slot_s or cfg.health_slot_s)), cfg.seed)
        if sev == 2 and module in SILENT_WHEN_DOWN:
            return None
        host, values_of = MODULES[module]
        values = values_of(sev, jitter)
        data: dict[str, Any] = {"module": module, "host": host, **values}
        ts = round(now_s * 1000)
        return Record(
            cfg.producer,
            module,
            ts,
            record_id(cfg.producer, module, ts, data),
            data=data,
            idb_tags=["host"],
            idb_fields=sorted(values),
        )

    def _reports(self, times: list[float], slot_s: float | None = None) -> list[Record]:
        out = []
        for t in times:
            for module in self.config.modules:
                record = self.report(module, t, slot_s)
                if record is not None:
                    out.append(record)
        return out

    async def batches(self) -> AsyncIterator[SourceBatch]:
        cfg = self.config
        if not self.backfilled and cfg.backfill_hours > 0:
            now = time.time()
            step = cfg.backfill_step_s
            count = int(cfg.backfill_hours * 3600 // step)
            times = [now - (count - i) * step for i in range(count)]
            chunk = max(1, 5000 // len(cfg.modules))
            for first in range(0, len(times), chunk):
                done = first + chunk >= len(times)
                records = self._reports(times[first : first + chunk], cfg.backfill_health_slot_s)
                yield SourceBatch(records, position={"backfilled": done})
                await asyncio.sleep(0)
        self.backfilled = True
        while True:
            yield SourceBatch(self._reports([time.time()]), position={"backfilled": True})
            await asyncio.sleep(cfg.interval_s)
