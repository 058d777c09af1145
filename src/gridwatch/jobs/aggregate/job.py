"""The ``aggregate`` job: event-time tumbling windows, group-by keys, spreading over bins.

The per-batch logic (:class:`AggregateCore`) is shared with ``gridwatch batch``; the job adds
the watermark, revisions and the correction topic (:mod:`.table`) around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from gridwatch.components import Job, JobConfig
from gridwatch.record import NAME_PATTERN, Record
from gridwatch.windowing.bins import AggSpec, Columns, float_column, int_column, parse_measure
from gridwatch.windowing.cells import Cells, chunked_partials
from gridwatch.windowing.extract import Extraction, LineQuery, check, connect, quote
from gridwatch.windowing.output import BinWriter
from gridwatch.windowing.table import BinTable

MAX_BINS_PER_RECORD = 20_000
AGGREGATE_ROWS = 50_000
"""The stream job aggregates its input batches together once this many rows wait."""
MAX_EXACT = 2**53
"""Largest fixed-point magnitude of one record's value: a bin's int64 sum then holds at least
1,024 such values, and realistic ones by the billion."""
DEFAULT_TYPES = {"key": "VARCHAR", "time": "BIGINT", "value": "DOUBLE"}


class AggregateConfig(JobConfig):
    """Settings of the ``aggregate`` job."""

    producer: str = Field(pattern=NAME_PATTERN, description="Producer of the output records.")
    output_type: str = Field(
        pattern=NAME_PATTERN,
        description="Type of the output records (topic {producer}_agg_{type}).",
    )
    max_batch_records: int = Field(
        20_000,
        ge=1,
        description="At most this many records are read from the bus at a time (each read "
        "is parsed by one DuckDB query, whose fixed cost larger reads share).",
    )
    window_s: int = Field(600, gt=0, description="Bin length in seconds (600, 3600, 86400, ...).")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Data fields to read, with their DuckDB types (e.g. BIGINT, DOUBLE, VARCHAR). "
        "Fields used elsewhere but not declared default to VARCHAR for keys, BIGINT for times, "
        "DOUBLE otherwise.",
    )
    derive: dict[str, str] = Field(
        default_factory=dict,
        description="New columns as SQL expressions over the fields (and earlier derived "
        "columns, and _timestamp, _producer, _type, _id), in order.",
    )
    where: str | None = Field(None, description="SQL condition: only matching records count.")
    time_field: str | None = Field(
        None, description="Event time of point records (default: the envelope's timestamp)."
    )
    start_field: str | None = Field(
        None, description="Start of each record's interval; with end_field, spreads it over bins."
    )
    end_field: str | None = Field(
        None,
        description="End of the interval (exclusive). When null the interval ends at the "
        "record's timestamp (open-ended: in progress when reported).",
    )
    time_unit: Literal["ms", "s"] = Field("ms", description="Unit of the time fields.")
    group_by: list[str] = Field(default_factory=list, description="Columns that form a group.")
    aggregates: dict[str, str] = Field(
        default_factory=dict,
        description="Output name -> 'op(column)': sum, mean, min, max or pNN (approximate, "
        "1 % relative accuracy), e.g. {bytes: sum(bytes), p95_rate: p95(rate)}.",
    )
    spread: list[str] = Field(
        default_factory=list,
        description="Additive columns distributed over the bins an interval overlaps, in "
        "proportion to the overlap (the others count in the bin holding the end).",
    )
    decimals: int = Field(
        0, ge=0, le=9, description="Sums are exact fixed-point numbers with this many decimals."
    )
    watermark_delay_s: float = Field(
        0.0, ge=0, description="Close a bin this long after the latest event time passed its end."
    )
    allowed_lateness_s: float = Field(
        3600.0, ge=0, description="Keep closed bins this long for late records (revisions)."
    )
    max_span_s: float = Field(
        7 * 86400.0, gt=0, description="Longer intervals are rejected to the dead-letter topic."
    )
    max_future_s: float | None = Field(
        3600.0,
        gt=0,
        description="A record whose event time is further than this ahead of this host's clock "
        "goes to the dead-letter topic, so that a producer with a clock far ahead cannot move "
        "the watermark past everybody's bins (null: no limit; batch runs take such records).",
    )
    rollup_state: bool = Field(
        False, description="Add the mergeable state (_acc) to outputs, for a `rollup` job."
    )

    @model_validator(mode="after")
    def _check(self) -> AggregateConfig:
        for name, text in self.aggregates.items():
            parse_measure(name, text)
        if (self.start_field is None) != (self.end_field is None) and self.start_field is None:
            raise ValueError("end_field needs start_field")
        if self.max_span_s / self.window_s > MAX_BINS_PER_RECORD:
            raise ValueError(
                f"max_span_s / window_s allows {self.max_span_s / self.window_s:.0f} bins per "
                f"record (at most {MAX_BINS_PER_RECORD}): lower max_span_s"
            )
        if self.spread and self.start_field is None:
            raise ValueError("spread needs start_field and end_field")
        summed = {parse_measure(n, t).field for n, t in self.aggregates.items()}
        missing = [name for name in self.spread if name not in summed]
        if missing:
            raise ValueError(f"spread fields {missing} have no sum(...) or mean(...) aggregate")
        check(AggregateCore.extraction_of(self))
        return self

    def spec(self) -> AggSpec:
        """The aggregation this config describes."""
        measures = tuple(parse_measure(n, t) for n, t in self.aggregates.items())
        return AggSpec(
            bin_ms=self.window_s * 1000,
            keys=tuple(self.group_by),
            measures=measures,
            spread=frozenset(self.spread),
            intervals=self.start_field is not None,
            decimals=self.decimals,
        )


class AggregateCore:
    """From envelope lines (or files) to accumulators per bin: pure, shared with batch mode."""

    def __init__(self, config: AggregateConfig) -> None:
        self.config = config
        self.spec = config.spec()
        self.extraction = self.extraction_of(config)
        self.conn = connect()
        self.query = LineQuery(self.conn, self.extraction)
        self.writer = BinWriter(
            config.producer, config.output_type, self.spec.bin_ms, config.rollup_state
        )
        self.topic = self.writer.topic

    @staticmethod
    def extraction_of(cfg: AggregateConfig) -> Extraction:
        """The SQL that turns envelopes into this job's columns."""
        spec = cfg.spec()
        fields = dict(cfg.fields)
        known = set(fields) | set(cfg.derive) | {"_timestamp", "_producer", "_type", "_id"}

        def use(name: str, kind: str) -> str:
            if name not in known:
                fields[name] = DEFAULT_TYPES[kind]
                known.add(name)
            return quote(name)

        unit = " * 1000" if cfg.time_unit == "s" else ""

        def ms(name: str) -> str:
            return f"TRY_CAST(round({use(name, 'time')}{unit}) AS BIGINT)"

        outputs: list[tuple[str, str]] = []
        if cfg.start_field and cfg.end_field:
            start, end = ms(cfg.start_field), ms(cfg.end_field)
            open_end = f"COALESCE({end}, GREATEST(_timestamp, {start}), _timestamp)"
            outputs += [("_end", open_end), ("_start", f"COALESCE({start}, {open_end})")]
        else:
            point = ms(cfg.time_field) if cfg.time_field else "_timestamp"
            outputs += [("_end", point), ("_start", point)]
        outputs += [(f"k{i}", use(name, "key")) for i, name in enumerate(spec.keys)]
        scale = 10**spec.decimals
        for i, name in enumerate(spec.summed):
            outputs.append((f"s{i}", f"TRY_CAST(round({use(name, 'value')} * {scale}) AS BIGINT)"))
        for i, name in enumerate(spec.ranged):
            outputs.append((f"v{i}", f"TRY_CAST({use(name, 'value')} AS DOUBLE)"))
        return Extraction(fields, outputs, cfg.derive, cfg.where)

    def columns(self, table: pa.Table) -> tuple[Columns, np.ndarray, list[tuple[int, str]]]:
        """Typed columns of the valid rows, their ``_row`` numbers, and rejected rows."""
        spec = self.spec
        rows = table.column("_row").to_numpy(zero_copy_only=False).astype(np.int64)
        start, start_ok = int_column(table, "_start")
        end, end_ok = int_column(table, "_end")
        columns = Columns(
            start,
            end,
            [table.column(f"k{i}") for i in range(len(spec.keys))],
            {name: int_column(table, f"s{i}") for i, name in enumerate(spec.summed)},
            {name: float_column(table, f"v{i}") for i, name in enumerate(spec.ranged)},
        )
        max_span = int(self.config.max_span_s * 1000)
        no_time = ~(start_ok & end_ok)
        backwards = ~no_time & (end < start)
        too_long = ~no_time & (end - start > max_span)
        bad = no_time | backwards | too_long
        rejected = [(int(r), "no event time") for r in rows[no_time]]
        rejected += [(int(r), "interval ends before it starts") for r in rows[backwards]]
        rejected += [
            (int(r), f"interval longer than max_span_s={self.config.max_span_s:g}")
            for r in rows[too_long]
        ]
        for name, (values, valid) in columns.summed.items():
            huge = ~bad & valid & (np.abs(values) > MAX_EXACT)
            bad |= huge
            limit = MAX_EXACT / 10**spec.decimals
            reason = f"{name} is beyond ±{limit:g}, the range of exact sums"
            rejected += [(int(r), reason) for r in rows[huge]]
        if bad.any():
            keep = np.flatnonzero(~bad)
            return columns.take(keep), rows[keep], rejected
        return columns, rows, rejected

    def on_lines(self, lines: Sequence[bytes]) -> tuple[Columns, np.ndarray, list[tuple[int, str]]]:
        """The columns of a batch of envelope lines."""
        table, invalid = self.query(lines)
        columns, rows, rejected = self.columns(table)
        return columns, rows, [(row, "not valid JSON") for row in invalid] + rejected

    def lines(self, cells: Cells, revisions: Sequence[int]) -> list[bytes]:
        """The output lines of many bins."""
        return self.writer.lines(self.spec, cells, revisions)


def late_record(producer: str, type_: str, job: str, reason: str, line: bytes) -> Record:
    """A correction-topic record carrying an input that came too late to be applied."""
    import msgspec

    from gridwatch.record import record_id

    data = {"job": job, "reason": reason, "record": msgspec.json.decode(line)}
    stamp = int(data["record"].get("timestamp", 0)) if isinstance(data["record"], dict) else 0
    correction_type = f"{type_}_late"
    return Record(
        producer,
        correction_type,
        stamp,
        record_id(producer, correction_type, stamp, data),
        data=data,
    )


class AggregateJob(Job):
    """Time-binned statistics over the inputs, published as ``agg`` records with revisions."""

    Config = AggregateConfig
    config: AggregateConfig

    def restore(self, state: Any) -> None:
        cfg = self.config
        self.core = AggregateCore(cfg)
        self.windows = BinTable(
            self.core.spec,
            round(cfg.watermark_delay_s * 1000),
            round(cfg.allowed_lateness_s * 1000),
        )
        self.windows.load(state)
        self._pending_columns: list[Columns] = []
        self._pending_rows = 0

    def checkpoint(self) -> Any:
        self._aggregate_pending()
        return self.windows.to_raw()

    def process(self, topic: str, lines: Sequence[bytes]) -> None:
        columns, rows, rejected = self.core.on_lines(lines)
        for row, reason in rejected:
            self.reject(lines[row], f"{self.id}: {reason}")
        columns, rows = self._drop_future(lines, columns, rows)
        bin_ms = self.core.spec.bin_ms
        too_late = self.windows.too_late((columns.start_ms // bin_ms) * bin_ms)
        if too_late.any():
            self._correct([lines[r] for r in rows[too_late]])
            columns = columns.take(np.flatnonzero(~too_late))
        if len(columns) == 0:
            return
        late = self.windows.late((columns.end_ms // bin_ms) * bin_ms)
        if late:
            self.context.metrics.inc(self.id, "late", late)
        # Lateness is decided per batch above; aggregating is exact and order-free, so several
        # batches are aggregated together (fewer, fuller cells to merge into the state).
        self._pending_columns.append(columns)
        self._pending_rows += len(columns)
        if self._pending_rows >= AGGREGATE_ROWS:
            self._aggregate_pending()
        self.windows.observe(int(columns.end_ms.max()))

    def _drop_future(
        self, lines: Sequence[bytes], columns: Columns, rows: np.ndarray
    ) -> tuple[Columns, np.ndarray]:
        limit = self.config.max_future_s
        if limit is None:
            return columns, rows
        ahead = columns.end_ms > (self.context.clock.time() + limit) * 1000
        if not ahead.any():
            return columns, rows
        reason = (
            f"{self.id}: event time more than max_future_s={limit:g} ahead of this host's clock"
        )
        for row in rows[ahead]:
            self.reject(lines[row], reason)
        self.context.metrics.inc(self.id, "too_early", int(ahead.sum()))
        keep = np.flatnonzero(~ahead)
        return columns.take(keep), rows[keep]

    def _aggregate_pending(self) -> None:
        if self._pending_columns:
            columns = Columns.concat(self._pending_columns)
            self._pending_columns, self._pending_rows = [], 0
            for cells in chunked_partials(self.core.spec, columns):
                self.windows.add(cells)

    def flush(self) -> None:
        self._aggregate_pending()
        # Closed bins are published once per checkpoint, however many batches revised them.
        cells, revisions = self.windows.emit()
        if len(cells):
            self.emit_lines(self.core.topic, self.core.lines(cells, revisions.tolist()))

    def _correct(self, lines: list[bytes]) -> None:
        cfg = self.config
        horizon = self.windows.horizon
        reason = f"later than allowed_lateness_s={cfg.allowed_lateness_s:g} (horizon {horizon})"
        records = [
            late_record(cfg.producer, cfg.output_type, self.id, reason, line) for line in lines
        ]
        self.context.metrics.inc(self.id, "too_late", len(records))
        self.emit(records)
