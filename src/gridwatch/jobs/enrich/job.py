"""The ``enrich`` job: joins records with reference tables and republishes them as ``enr``.

Seed 000's real-time enrichment: PanDA job rows get their queue's, site's and error code's
details. Tables are reloaded every ``refresh_s`` between batches without stopping the stream
(a failed reload keeps the previous table and is counted as an error). Lookups are done once
per distinct key of a batch. A record whose key is unknown is still emitted, with the table
names listed in ``unknown_field``, and counted in ``gridwatch_unknown_keys_total``.
The enriched record keeps the original's ``_id``, producer, type and timestamp.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.components import Job, JobConfig
from gridwatch.jobs.enrich.reference import Table, TableConfig, load_table
from gridwatch.record import Record, decode_lines

log = logging.getLogger(__name__)


class JoinConfig(BaseModel):
    """One lookup: a record field, the table it keys into, and the columns to copy."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(description="Name of a table in `tables`.")
    field: str = Field(description="The record's data field holding the key.")
    columns: dict[str, str] = Field(
        description="Output field -> table column, e.g. {cloud: cloud, site_tier: tier}."
    )


class EnrichConfig(JobConfig):
    """Settings of the ``enrich`` job."""

    tables: dict[str, TableConfig] = Field(description="Reference tables by name.")
    joins: list[JoinConfig] = Field(min_length=1, description="Lookups, applied in order.")
    unknown_field: str = Field(
        "enrich_unknown", description="Field listing the tables where a record's key was unknown."
    )
    overwrite: bool = Field(False, description="Replace fields the record already has.")

    @model_validator(mode="after")
    def _known_tables(self) -> EnrichConfig:
        unknown = sorted({j.table for j in self.joins} - set(self.tables))
        if unknown:
            raise ValueError(f"joins use unknown tables {unknown} (known: {sorted(self.tables)})")
        return self


def enrich(
    records: list[Record], tables: dict[str, Table], config: EnrichConfig
) -> tuple[list[Record], int]:
    """The enriched copies of ``records`` and how many lookups missed (pure)."""
    missed = 0
    lookups: list[dict[str, dict[str, Any] | None]] = []
    for join in config.joins:
        table = tables.get(join.table, {})
        keys = {str(r.data.get(join.field)) for r in records}
        lookups.append({key: table.get(key) for key in keys})
    out: list[Record] = []
    for record in records:
        data = dict(record.data)
        unknown: list[str] = []
        for join, found in zip(config.joins, lookups, strict=True):
            row = found[str(record.data.get(join.field))]
            if row is None:
                unknown.append(join.table)
                continue
            for name, column in join.columns.items():
                if config.overwrite or name not in data:
                    data[name] = row.get(column)
        if unknown:
            data[config.unknown_field] = unknown
            missed += 1
        out.append(
            Record(
                record.producer,
                record.type,
                record.timestamp,
                record.id,
                type_prefix="enr",
                host=record.host,
                version=record.version,
                data=data,
                idb_tags=record.idb_tags,
                idb_fields=record.idb_fields,
            )
        )
    return out, missed


class EnrichJob(Job):
    """Adds reference data to each record and publishes it with ``type_prefix: enr``."""

    Config = EnrichConfig
    config: EnrichConfig

    def restore(self, state: Any) -> None:
        self.tables: dict[str, Table] = {}
        self.loaded_at: dict[str, float] = {}
        for name in self.config.tables:
            self._load(name, initial=True)

    def _load(self, name: str, initial: bool = False) -> None:
        try:
            table = load_table(self.config.tables[name])
        except Exception as exc:
            if initial:
                raise RuntimeError(
                    f"{self.id}: cannot load reference table {name!r}: {exc}"
                ) from exc
            self.context.metrics.inc(self.id, "errors")
            log.error("%s: reloading table %s failed, keeping the old one: %s", self.id, name, exc)
        else:
            self.tables[name] = table
            log.info("%s: table %s loaded (%d keys)", self.id, name, len(table))
        self.loaded_at[name] = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        for name, table in self.config.tables.items():
            if now - self.loaded_at.get(name, 0.0) >= table.refresh_s:
                self._load(name)

    def process(self, topic: str, lines: Sequence[bytes]) -> None:
        records, missed = enrich(decode_lines(lines), self.tables, self.config)
        if missed:
            self.context.metrics.inc(self.id, "unknown_keys", missed)
        self.emit(records)
