"""The ``accounting`` job: the latest state of every entity, and periodic snapshots of it.

Seed 000's "global map": each update (e.g. a PanDA job row) carries an entity id, a commit
time (its version) and a state. The map keeps, per entity, the update with the highest
version (ties broken by ``_id``), so out-of-order updates never roll an entity back. Time is
event time: the clock is the highest version seen, and each time it crosses a multiple of
``snapshot_interval_s`` the job emits a snapshot stamped with that boundary: per state and
chosen keys, the number of entities and the sums of chosen fields. Entities in a final state
leave the map ``retain_final_s`` after their last update; an update for an unknown entity
older than that horizon goes to the correction topic (it would resurrect an evicted entity).

Within a batch, updates are applied in version order, so feeding the archive in commit order
(``gridwatch batch``) rebuilds exactly the snapshots the stream produced from in-order input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from gridwatch.components import Job, JobConfig
from gridwatch.jobs.aggregate.job import late_record
from gridwatch.record import NAME_PATTERN, Record, canonical_json, hash128
from gridwatch.windowing.extract import (
    BatchResult,
    Extraction,
    LineQuery,
    check,
    connect,
    quote,
    run_on_files,
)

Entity = list[Any]
"""[version, _id, state, keys, sums]"""


class AccountingConfig(JobConfig):
    """Settings of the ``accounting`` job."""

    producer: str = Field(pattern=NAME_PATTERN, description="Producer of the snapshot records.")
    output_type: str = Field(pattern=NAME_PATTERN, description="Type of the snapshot records.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Data fields to read with their DuckDB types."
    )
    derive: dict[str, str] = Field(
        default_factory=dict, description="New columns as SQL expressions, as in `aggregate`."
    )
    where: str | None = Field(None, description="SQL condition: only matching updates count.")
    entity_field: str = Field(description="The entity's id (e.g. pandaid).")
    version_field: str | None = Field(
        None, description="The update's commit time (default: the envelope's timestamp)."
    )
    time_unit: Literal["ms", "s"] = Field("ms", description="Unit of version_field.")
    state_field: str = Field(description="The entity's state (e.g. jobstatus).")
    group_by: list[str] = Field(default_factory=list, description="Keys of the snapshot groups.")
    sums: list[str] = Field(default_factory=list, description="Numeric fields summed per group.")
    snapshot_interval_s: int = Field(600, gt=0, description="Snapshot every this much event time.")
    final_states: list[str] = Field(
        default=["finished", "failed", "cancelled", "closed"],
        description="States after which an entity leaves the map (after retain_final_s).",
    )
    retain_final_s: float = Field(3600.0, ge=0, description="Keep final entities this long.")
    commit_interval_s: float = Field(
        10.0, ge=0, description="Checkpoint the map at most this often (it can be large)."
    )
    max_future_s: float | None = Field(
        3600.0,
        gt=0,
        description="An update whose version is further than this ahead of this host's clock "
        "goes to the dead-letter topic, so that one clock far ahead cannot move the snapshot "
        "clock past everybody's updates (null: no limit; batch runs take such updates).",
    )

    @model_validator(mode="after")
    def _check(self) -> AccountingConfig:
        check(AccountingCore.extraction_of(self))
        return self


class AccountingCore:
    """The entity map and its snapshots; pure, shared with batch mode."""

    def __init__(self, config: AccountingConfig) -> None:
        self.config = config
        self.extraction = self.extraction_of(config)
        self.conn = connect()
        self.query = LineQuery(self.conn, self.extraction)
        self.entities: dict[str, Entity] = {}
        self.clock: int | None = None
        self.final = set(config.final_states)
        self.interval_ms = config.snapshot_interval_s * 1000

    @staticmethod
    def extraction_of(cfg: AccountingConfig) -> Extraction:
        """The SQL that turns envelopes into updates."""
        fields = dict(cfg.fields)
        known = set(fields) | set(cfg.derive) | {"_timestamp", "_producer", "_type", "_id"}

        def use(name: str, kind: str) -> str:
            if name not in known:
                fields[name] = kind
                known.add(name)
            return quote(name)

        unit = " * 1000" if cfg.time_unit == "s" else ""
        version = (
            f"TRY_CAST(round({use(cfg.version_field, 'BIGINT')}{unit}) AS BIGINT)"
            if cfg.version_field
            else "_timestamp"
        )
        outputs = [
            ("_entity", f"CAST({use(cfg.entity_field, 'VARCHAR')} AS VARCHAR)"),
            ("_version", version),
            ("_uid", "_id"),
            ("_state", f"CAST({use(cfg.state_field, 'VARCHAR')} AS VARCHAR)"),
        ]
        outputs += [(f"k{i}", use(k, "VARCHAR")) for i, k in enumerate(cfg.group_by)]
        outputs += [
            (f"s{i}", f"TRY_CAST({use(s, 'DOUBLE')} AS DOUBLE)") for i, s in enumerate(cfg.sums)
        ]
        return Extraction(fields, outputs, cfg.derive, cfg.where)

    def rows(self, table: pa.Table) -> tuple[list[tuple[Any, ...]], list[int]]:
        """Updates sorted by (version, _id), and the ``_row`` of unusable ones."""
        entity = table.column("_entity").to_pylist()
        version = table.column("_version").to_pylist()
        row = table.column("_row").to_pylist()
        bad = [r for r, e, v in zip(row, entity, version, strict=True) if e is None or v is None]
        columns = [
            entity,
            version,
            table.column("_uid").to_pylist(),
            table.column("_state").to_pylist(),
            list(
                zip(
                    *(table.column(f"k{i}").to_pylist() for i in range(len(self.config.group_by))),
                    strict=True,
                )
            )
            if self.config.group_by
            else [()] * len(entity),
            list(
                zip(
                    *(table.column(f"s{i}").to_pylist() for i in range(len(self.config.sums))),
                    strict=True,
                )
            )
            if self.config.sums
            else [()] * len(entity),
            row,
        ]
        updates = [u for u in zip(*columns, strict=True) if u[0] is not None and u[1] is not None]
        updates.sort(key=lambda u: (u[1], u[2] or ""))
        return updates, bad

    def apply(self, updates: Sequence[tuple[Any, ...]]) -> tuple[list[Record], list[int]]:
        """Apply sorted updates; return the snapshots due and the ``_row`` of too-old updates."""
        snapshots: list[Record] = []
        too_old: list[int] = []
        horizon_ms = round(self.config.retain_final_s * 1000)
        for entity, version, uid, state, keys, sums, row in updates:
            if (
                self.clock is not None
                and version // self.interval_ms > self.clock // self.interval_ms
            ):
                boundary = (version // self.interval_ms) * self.interval_ms
                self.evict(boundary - horizon_ms)
                snapshots += self.snapshot(boundary)
            if self.clock is None or version > self.clock:
                self.clock = version
            known = self.entities.get(entity)
            if known is None:
                if version < self.clock - horizon_ms:
                    too_old.append(row)
                    continue
            elif (known[0], known[1] or "") >= (version, uid or ""):
                continue
            self.entities[entity] = [version, uid, state, list(keys), [s or 0 for s in sums]]
        return snapshots, too_old

    def snapshot(self, at_ms: int) -> list[Record]:
        """Count and sum the map per (state, keys), stamped ``at_ms``."""
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for entry in self.entities.values():
            state, keys, sums = entry[2], entry[3], entry[4]
            totals = groups.setdefault((state, *keys), [0, [0] * len(sums)])
            totals[0] += 1
            totals[1] = [a + b for a, b in zip(totals[1], sums, strict=True)]
        cfg = self.config
        out: list[Record] = []
        for group in sorted(groups, key=lambda g: canonical_json(list(g))):
            count, sums_of_group = groups[group]
            data: dict[str, Any] = {"snapshot_time": at_ms, "state": group[0]}
            data.update(zip(cfg.group_by, group[1:], strict=True))
            data["count"] = count
            data.update(zip(cfg.sums, sums_of_group, strict=True))
            rid = hash128(
                cfg.producer.encode(),
                cfg.output_type.encode(),
                str(at_ms).encode(),
                canonical_json(list(group)),
            )
            out.append(
                Record(cfg.producer, cfg.output_type, at_ms, rid, type_prefix="agg", data=data)
            )
        return out

    def evict(self, before_ms: int) -> None:
        """Forget entities in a final state whose last update is older than ``before_ms``."""
        gone = [e for e, v in self.entities.items() if v[2] in self.final and v[0] < before_ms]
        for entity in gone:
            del self.entities[entity]

    def to_json(self) -> dict[str, Any]:
        """Checkpoint form."""
        return {"clock": self.clock, "entities": self.entities}

    def load(self, state: dict[str, Any] | None) -> None:
        """Restore from :meth:`to_json`."""
        if state:
            self.clock = state["clock"]
            self.entities = dict(state["entities"])


def accounting_batch(
    config: AccountingConfig,
    files: Sequence[str],
    from_ms: int,
    to_ms: int,
    json_column: str | None = None,
) -> Any:
    """Replay updates before ``to_ms`` in commit order; snapshots stamped in [from, to)."""
    core = AccountingCore(config)
    updates: list[tuple[Any, ...]] = []
    result = BatchResult()
    for chunk in run_on_files(core.conn, core.extraction, files, json_column):
        rows, bad = core.rows(pa.Table.from_batches([chunk]))
        result.rows += chunk.num_rows
        result.rejected += [(r, "no entity id or version") for r in bad]
        updates += [u for u in rows if u[1] < to_ms]
    updates.sort(key=lambda u: (u[1], u[2] or ""))
    snapshots, _ = core.apply(updates)
    result.records = [s for s in snapshots if from_ms <= s.timestamp < to_ms]
    return result


class AccountingJob(Job):
    """Keeps the latest state per entity and publishes snapshots as ``agg`` records."""

    Config = AccountingConfig
    config: AccountingConfig

    def restore(self, state: Any) -> None:
        self.core = AccountingCore(self.config)
        self.core.load(state)

    def checkpoint(self) -> Any:
        return self.core.to_json()

    def _drop_future(
        self, lines: Sequence[bytes], updates: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        limit = self.config.max_future_s
        if limit is None:
            return updates
        ahead_of = (self.context.clock.time() + limit) * 1000
        kept = [update for update in updates if update[1] <= ahead_of]
        if len(kept) < len(updates):
            reason = (
                f"{self.id}: version more than max_future_s={limit:g} ahead of this host's clock"
            )
            for update in updates:
                if update[1] > ahead_of:
                    self.reject(lines[update[-1]], reason)
            self.context.metrics.inc(self.id, "too_early", len(updates) - len(kept))
        return kept

    def process(self, topic: str, lines: Sequence[bytes]) -> None:
        table, invalid = self.core.query(lines)
        for row in invalid:
            self.reject(lines[row], f"{self.id}: not valid JSON")
        updates, bad = self.core.rows(table)
        for row in bad:
            self.reject(lines[row], f"{self.id}: no entity id or version")
        snapshots, too_old = self.core.apply(self._drop_future(lines, updates))
        self.emit(snapshots)
        if too_old:
            cfg = self.config
            reason = f"older than retain_final_s={cfg.retain_final_s:g} for an unknown entity"
            self.context.metrics.inc(self.id, "too_late", len(too_old))
            self.emit(
                [
                    late_record(cfg.producer, cfg.output_type, self.id, reason, lines[r])
                    for r in too_old
                ]
            )
