"""The ``rollup`` job: longer bins (e.g. daily) computed from an aggregate job's bins.

This is seed 001's daily procedure, which reads the 10-minute statistics rather than the raw
logs. Each input bin carries its mergeable state (``_acc``, from ``rollup_state: true``); a
parent bin is the merge of its latest child revisions, so a revised child replaces its earlier
revision instead of being counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from pydantic import Field, model_validator

from gridwatch.components import Job, JobConfig
from gridwatch.jobs.aggregate.job import bin_record, late_record
from gridwatch.record import NAME_PATTERN, Record, decode_lines
from gridwatch.windowing.bins import Acc, AggSpec, BinKey, parse_measure, render
from gridwatch.windowing.windows import WindowState, key_order


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


class RollupCore:
    """Children (latest revision each) per parent bin; pure, shared with batch mode."""

    def __init__(self, config: RollupConfig) -> None:
        self.config = config
        self.spec = config.spec()
        self.children: dict[BinKey, dict[str, tuple[int, Acc]]] = {}

    def parent_of(self, record: Record) -> BinKey:
        """The parent bin of an input bin."""
        data = record.data
        start = int(data["window_start"])
        bin_ms = self.spec.bin_ms
        return (start // bin_ms) * bin_ms, tuple(data.get(k) for k in self.spec.keys)

    def add(self, record: Record) -> BinKey:
        """Take one input bin (ignored if an equal or newer revision is known)."""
        parent = self.parent_of(record)
        revision = int(record.data.get("revision", 0))
        acc = Acc.from_json(record.data["_acc"])
        kids = self.children.setdefault(parent, {})
        known = kids.get(record.id)
        if known is None or revision >= known[0]:
            kids[record.id] = (revision, acc)
        return parent

    def merged(self, parent: BinKey) -> Acc:
        """The parent's state: the merge of its children."""
        total = Acc()
        for child in sorted(self.children.get(parent, {})):
            total.merge(self.children[parent][child][1])
        return total

    def record(self, key: BinKey, acc: Acc, revision: int) -> Record:
        """The output record of a parent bin."""
        data = render(self.spec, key[0], key[1], acc)
        data["revision"] = revision
        if self.config.rollup_state:
            data["_acc"] = acc.to_json()
        return bin_record(
            self.config.producer, self.config.output_type, self.spec.bin_ms, key, data
        )

    def batch(self, records: Iterable[Record], from_ms: int, to_ms: int) -> list[Record]:
        """All parent bins starting in ``[from_ms, to_ms)``, revision 0."""
        for record in records:
            if "_acc" in record.data:
                self.add(record)
        keys = sorted((k for k in self.children if from_ms <= k[0] < to_ms), key=key_order)
        return [self.record(key, self.merged(key), 0) for key in keys]


class RollupJob(Job):
    """Merges input bins into longer bins, re-emitting a parent when a child changes."""

    Config = RollupConfig
    config: RollupConfig

    def restore(self, state: Any) -> None:
        cfg = self.config
        self.core = RollupCore(cfg)
        self.windows = WindowState(
            self.core.spec.bin_ms,
            round(cfg.watermark_delay_s * 1000),
            round(cfg.allowed_lateness_s * 1000),
        )
        if state:
            self.windows.load(state["windows"])
            for start, keys, kids in state["children"]:
                self.core.children[(start, tuple(keys))] = {
                    cid: (rev, Acc.from_json(acc)) for cid, (rev, acc) in kids.items()
                }

    def checkpoint(self) -> Any:
        children = [
            [key[0], list(key[1]), {cid: [rev, acc.to_json()] for cid, (rev, acc) in kids.items()}]
            for key, kids in sorted(self.core.children.items(), key=lambda i: key_order(i[0]))
        ]
        return {"windows": self.windows.to_json(), "children": children}

    def process(self, topic: str, lines: Sequence[bytes]) -> None:
        records = decode_lines(lines)
        touched: set[BinKey] = set()
        bin_ms = self.core.spec.bin_ms
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
                touched.add(self.core.add(record))
            except (KeyError, TypeError, ValueError) as exc:
                self.reject(line, f"{self.id}: not a bin with its state: {exc!r}")
                continue
            self.windows.observe(window_end)
        for parent in touched:
            self.windows.replace(parent, self.core.merged(parent))
        if late:
            cfg = self.config
            reason = f"later than allowed_lateness_s={cfg.allowed_lateness_s:g}"
            self.context.metrics.inc(self.id, "too_late", len(late))
            self.emit(
                [late_record(cfg.producer, cfg.output_type, self.id, reason, line) for line in late]
            )

    def flush(self) -> None:
        self.emit([self.core.record(e.key, e.acc, e.revision) for e in self.windows.emit()])
        for parent in [k for k in self.core.children if k not in self.windows.bins]:
            del self.core.children[parent]


def decode_records(lines: Iterable[bytes]) -> list[Record]:
    """Envelope lines as records (skipping blank lines)."""
    return [msgspec.json.decode(line, type=Record) for line in lines if line.strip()]
