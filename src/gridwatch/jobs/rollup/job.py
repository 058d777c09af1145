"""The ``rollup`` job: longer bins (e.g. daily) computed from an aggregate job's bins.

This is seed 001's daily procedure, which reads the 10-minute statistics rather than the raw
logs. Each input bin carries its mergeable state (``_acc``, from ``rollup_state: true``); a
parent bin is the merge of its latest child revisions, so a revised child replaces its earlier
revision instead of being counted twice. Parents live in the same
:class:`~gridwatch.windowing.table.BinTable` as the ``aggregate`` job's bins: a new child is
merged into its parent, a revised one makes the parent be recomputed from its children.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from pydantic import Field, model_validator

from gridwatch.components import Job, JobConfig
from gridwatch.jobs.aggregate.job import late_record
from gridwatch.record import NAME_PATTERN, Record, decode_lines
from gridwatch.windowing.bins import AggSpec, BinKey, parse_measure
from gridwatch.windowing.cells import Cells
from gridwatch.windowing.output import BinWriter
from gridwatch.windowing.state import EMPTY, State, read_state, state_fields
from gridwatch.windowing.table import BinTable


class RollupConfig(JobConfig):
    """Settings of the ``rollup`` job."""

    producer: str = Field(pattern=NAME_PATTERN, description="Producer of the output records.")
    output_type: str = Field(pattern=NAME_PATTERN, description="Type of the output records.")
    window_s: int = Field(86400, gt=0, description="Bin length (a multiple of the inputs').")
    group_by: list[str] = Field(
        default_factory=list, description="Keys of the input bins to keep (a subset of theirs)."
    )
    aggregates: dict[str, str] = Field(
        default_factory=dict,
        description="As in `aggregate`, over the columns the input job aggregated.",
    )
    intervals: bool = Field(True, description="Inputs come from intervals (emit ended/active).")
    decimals: int = Field(0, ge=0, le=9, description="The input job's decimals.")
    watermark_delay_s: float = Field(0.0, ge=0, description="As in `aggregate`.")
    allowed_lateness_s: float = Field(86400.0, ge=0, description="As in `aggregate`.")
    rollup_state: bool = Field(False, description="Add _acc to outputs (for a further rollup).")

    @model_validator(mode="after")
    def _check(self) -> RollupConfig:
        for name, text in self.aggregates.items():
            parse_measure(name, text)
        return self

    def spec(self) -> AggSpec:
        """The rendering of parent bins."""
        return AggSpec(
            bin_ms=self.window_s * 1000,
            keys=tuple(self.group_by),
            measures=tuple(parse_measure(n, t) for n, t in self.aggregates.items()),
            intervals=self.intervals,
            decimals=self.decimals,
        )


Children = dict[str, tuple[int, State]]
"""An input bin's id -> its latest revision and state."""


class RollupCore:
    """Input bins (latest revision each) per parent bin, and the parents' table; shared with
    batch mode."""

    def __init__(self, config: RollupConfig, table: BinTable | None = None) -> None:
        self.config = config
        self.table = table if table is not None else BinTable(config.spec())
        self.children: dict[BinKey, Children] = {}
        self.writer = BinWriter(
            config.producer, config.output_type, self.table.bin_ms, config.rollup_state
        )
        self._new: list[tuple[BinKey, State]] = []
        self._revised: set[BinKey] = set()

    def parent_of(self, record: Record) -> BinKey:
        """The parent bin of an input bin."""
        data = record.data
        start = int(data["window_start"])
        bin_ms = self.table.bin_ms
        return (start // bin_ms) * bin_ms, tuple(data.get(k) for k in self.table.spec.keys)

    def add(self, record: Record, parent: BinKey) -> None:
        """Take one input bin (an equal or newer revision than the one known replaces it, an
        older one is ignored but still marks its parent changed); :meth:`apply` merges."""
        revision = int(record.data.get("revision", 0))
        state = read_state(record.data["_acc"])
        kids = self.children.setdefault(parent, {})
        known = kids.get(record.id)
        if known is not None and revision < known[0]:
            self._new.append((parent, EMPTY))
            return
        kids[record.id] = (revision, state)
        if known is None:
            self._new.append((parent, state))
        else:
            self._revised.add(parent)

    def apply(self) -> None:
        """Merge the input bins taken since the last call into their parents."""
        new = [(key, state) for key, state in self._new if key not in self._revised]
        revised = [
            (key, state)
            for key in self._revised
            for _, state in self.children.get(key, {}).values()
        ]
        self._new, self._revised = [], set()
        self._keep_fields(state for _, state in new + revised)
        spec = self.table.spec
        if new:
            self.table.add(Cells.from_states(spec, *zip(*new, strict=True)))
        if revised:
            self.table.replace(Cells.from_states(spec, *zip(*revised, strict=True)))

    def _keep_fields(self, states: Iterable[State]) -> None:
        """With ``rollup_state``, parents keep every field of their inputs' states, named by a
        measure or not: a further rollup reads them from ``_acc``."""
        if not self.config.rollup_state:
            return
        spec = self.table.spec
        kept = set(spec.kept)
        for state in states:
            kept.update(state_fields(state))
        if len(kept) > len(spec.kept):
            self.table.widen(dataclasses.replace(spec, kept=tuple(sorted(kept))))

    def lines(self, cells: Cells, revisions: Sequence[int]) -> list[bytes]:
        """The output lines of parent bins."""
        return self.writer.lines(self.table.spec, cells, revisions)

    def forget_final(self) -> None:
        """Drop the children of parents the table no longer keeps."""
        for parent in [key for key in self.children if not self.table.holds(key)]:
            del self.children[parent]

    def batch(self, records: Iterable[Record], from_ms: int, to_ms: int) -> list[bytes]:
        """The lines of all parent bins starting in ``[from_ms, to_ms)``, revision 0."""
        for record in records:
            if "_acc" in record.data:
                self.add(record, self.parent_of(record))
        self._new, self._revised = [], set(self.children)  # latest revisions only
        self.apply()
        rows = self.table.emittable(from_ms, to_ms)
        return self.lines(self.table.take(rows), [0] * len(rows))

    def checkpoint(self) -> msgspec.Raw:
        """The parents' table and the children, as JSON."""
        children = [
            [start, list(keys), {cid: [rev, state] for cid, (rev, state) in kids.items()}]
            for (start, keys), kids in self.children.items()
        ]
        table = bytes(self.table.to_raw())
        encoded = msgspec.json.encode(children)
        return msgspec.Raw(b'{"table":' + table + b',"children":' + encoded + b"}")

    def load(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`checkpoint` or from the per-bin form of earlier versions (its
        ``windows`` load as a table's per-bin form)."""
        for start, keys, kids in state["children"]:
            self.children[(int(start), tuple(keys))] = {
                cid: (int(rev), read_state(acc)) for cid, (rev, acc) in kids.items()
            }
        self._keep_fields(s for kids in self.children.values() for _, s in kids.values())
        self.table.load(state["table"] if "table" in state else state["windows"])


class RollupJob(Job):
    """Merges input bins into longer bins, re-emitting a parent when a child changes."""

    Config = RollupConfig
    config: RollupConfig

    def restore(self, state: Any) -> None:
        cfg = self.config
        self.windows = BinTable(
            cfg.spec(), round(cfg.watermark_delay_s * 1000), round(cfg.allowed_lateness_s * 1000)
        )
        self.core = RollupCore(cfg, self.windows)
        if state:
            self.core.load(state)

    def checkpoint(self) -> Any:
        return self.core.checkpoint()

    def process(self, topic: str, lines: Sequence[bytes]) -> None:
        records = decode_lines(lines)
        bin_ms = self.windows.bin_ms
        late: list[bytes] = []
        for line, record in zip(lines, records, strict=True):
            if "_acc" not in record.data:
                self.reject(line, f"{self.id}: input bin has no _acc (set rollup_state: true)")
                continue
            try:
                parent = self.core.parent_of(record)
                window_end = int(record.data["window_end"])
                horizon = self.windows.horizon
                if horizon is not None and parent[0] + bin_ms <= horizon:
                    late.append(line)
                    continue
                self.core.add(record, parent)
            except (KeyError, TypeError, ValueError) as exc:
                self.reject(line, f"{self.id}: not a bin with its state: {exc!r}")
                continue
            self.windows.observe(window_end)
        self.core.apply()
        if late:
            cfg = self.config
            reason = f"later than allowed_lateness_s={cfg.allowed_lateness_s:g}"
            self.context.metrics.inc(self.id, "too_late", len(late))
            self.emit(
                [late_record(cfg.producer, cfg.output_type, self.id, reason, line) for line in late]
            )

    def flush(self) -> None:
        cells, revisions = self.windows.emit()
        if len(cells):
            self.emit_lines(self.core.writer.topic, self.core.lines(cells, revisions.tolist()))
        self.core.forget_final()
