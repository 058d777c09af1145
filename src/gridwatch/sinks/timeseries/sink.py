"""The ``timeseries`` sink: numeric records into the embedded store that the API and dashboard read.

Records become points by the shared rules of :mod:`gridwatch.serving.points`; points are
buffered and written (upserted, with their rollups recomputed) when the runtime commits, so one
DuckDB transaction covers many bus batches.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from gridwatch.components import Batch, Sink, SinkConfig, WriteResult
from gridwatch.serving.points import PointMaker, PointRules
from gridwatch.serving.store import (
    DEFAULT_THREADS,
    StagedPoints,
    TimeSeriesStore,
    close_store,
    open_store,
)
from gridwatch.serving.tiers import DAY_MS, HOUR_MS


class TimeseriesConfig(SinkConfig, PointRules):
    """Settings of the ``timeseries`` sink."""

    path: Path | None = Field(
        None, description="The DuckDB file (default: {data_dir}/timeseries/{id}.duckdb)."
    )
    retention_raw_hours: float | None = Field(
        48.0, gt=0, description="Keep raw points this long (null: forever)."
    )
    retention_10m_days: float | None = Field(
        35.0, gt=0, description="Keep 10-minute bins this long (null: forever)."
    )
    retention_30m_days: float | None = Field(
        35.0, gt=0, description="Keep 30-minute bins this long (null: forever)."
    )
    retention_1h_days: float | None = Field(
        800.0, gt=0, description="Keep 1-hour bins this long (null: forever)."
    )
    retention_1d_days: float | None = Field(
        None, gt=0, description="Keep 1-day bins this long (null: forever)."
    )
    status_fields: list[str] = Field(
        default_factory=lambda: ["status_code"],
        description="Fields whose bins are always read as their worst (highest) value.",
    )
    flush_points: int = Field(
        200_000, ge=1, description="Write buffered points once this many are waiting."
    )
    duckdb_threads: int = Field(
        DEFAULT_THREADS,
        ge=1,
        description="Threads DuckDB may use for one query or write (more helps large scans "
        "on an idle machine; one is cheaper and steadier on a busy one).",
    )
    retention_check_interval_s: float = Field(
        300.0, gt=0, description="How often expired rows are deleted."
    )

    def retention_ms(self) -> dict[str, int | None]:
        """Retention of each tier in milliseconds (``None``: forever)."""

        def ms(value: float | None, unit_ms: int) -> int | None:
            return None if value is None else round(value * unit_ms)

        return {
            "raw": ms(self.retention_raw_hours, HOUR_MS),
            "10m": ms(self.retention_10m_days, DAY_MS),
            "30m": ms(self.retention_30m_days, DAY_MS),
            "1h": ms(self.retention_1h_days, DAY_MS),
            "1d": ms(self.retention_1d_days, DAY_MS),
        }


class TimeseriesSink(Sink):
    """Stores numeric fields in DuckDB with 10 min to 1 d rollups; serves ``/api/v1/query``."""

    Config = TimeseriesConfig
    config: TimeseriesConfig

    def __init__(self, component_id: str, config: Any, context: Any) -> None:
        super().__init__(component_id, config, context)
        path = self.config.path or context.data_dir / "timeseries" / f"{component_id}.duckdb"
        self.path = Path(path)
        self.store: TimeSeriesStore | None = None

    @property
    def status_fields(self) -> list[str]:
        """Fields read as their worst value."""
        return self.config.status_fields

    def open(self, state: Any) -> None:
        self.store = open_store(self.path, self.config.retention_ms(), self.config.duckdb_threads)
        self.maker = PointMaker(self.config)
        self.staged = StagedPoints()
        self.last_retention = 0.0

    def write(self, batch: Batch) -> WriteResult:
        assert self.store is not None
        rejected: list[tuple[int, str]] = []
        for index, record in enumerate(batch.records):
            try:
                point = self.maker.point(record)
            except ValueError as exc:
                rejected.append((index, str(exc)))
                continue
            if not self.store.stage(self.staged, point, record.id):
                rejected.append((index, f"{point.measurement}: no numeric field to store"))
        if len(self.staged) >= self.config.flush_points:
            self._flush()
        return WriteResult(rejected)

    def _flush(self) -> None:
        assert self.store is not None
        staged, self.staged = self.staged, StagedPoints()
        try:
            self.store.write(staged)
        except BaseException:
            self.staged = staged  # written again with the next commit
            raise

    def prepare_commit(self) -> Any:
        self._flush()
        assert self.store is not None
        if time.monotonic() - self.last_retention >= self.config.retention_check_interval_s:
            self.store.enforce_retention()
            self.last_retention = time.monotonic()
        return None

    def close(self) -> None:
        if self.store is not None:
            close_store(self.store)
            self.store = None
