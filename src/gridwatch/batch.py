"""Jobs in batch over the archive: the same pure logic as the stream, DuckDB reading the files.

Input is the Parquet archive (``{root}/{producer}/{type_prefix}/{type}/{YYYY}/{MM}/{DD}/``,
the envelope JSON in one column) or NDJSON files such as the ``jsonl`` sink writes. Output
bins carry revision 0; their ``_id`` equals the stream's, so writing them over the stream's
results replaces them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gridwatch.archive.layout import ArchiveFilter
from gridwatch.archive.layout import archive_files as partition_files
from gridwatch.archive.tables import DAY_MS
from gridwatch.errors import ConfigurationError
from gridwatch.record import decode_lines, decode_one
from gridwatch.windowing.cells import chunked_partials
from gridwatch.windowing.extract import BatchResult, connect, file_source, run_on_files
from gridwatch.windowing.table import BinTable

SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")


def input_files(paths: Sequence[Path]) -> list[str]:
    """Files to read: given files, and the data files found under given directories."""
    found: list[str] = []
    for path in paths:
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        elif path.exists():
            found.append(str(path))
        else:
            raise ConfigurationError(f"input {path} does not exist")
    return found


def archive_files(
    root: Path,
    datasets: Sequence[tuple[str, str, str]],
    from_ms: int,
    to_ms: int,
    margin_days: int = 1,
) -> list[str]:
    """The Parquet files of the datasets ``(producer, type_prefix, type)`` in the day folders
    of ``[from - margin, to + margin]``."""
    margin_ms = margin_days * DAY_MS
    files: list[str] = []
    for producer, type_prefix, type_ in datasets:
        where = ArchiveFilter(producer, type_prefix, type_, from_ms - margin_ms, to_ms + margin_ms)
        files += [str(path) for path, _ in partition_files(root, where)]
    return files


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def iter_lines(files: Sequence[str], json_column: str | None = None) -> Iterator[bytes]:
    """Every envelope line of the files (NDJSON lines or the Parquet JSON column)."""
    conn = connect()
    reader = conn.sql(f"SELECT line FROM {file_source(files, json_column)}").to_arrow_reader()
    for chunk in reader:
        for value in chunk.column(0).to_pylist():
            if value:
                yield value.encode()


def aggregate_batch(
    config: Any, files: Sequence[str], from_ms: int, to_ms: int, json_column: str | None = None
) -> BatchResult:
    """An ``aggregate`` job's bins starting in ``[from_ms, to_ms)``, from the files."""
    from gridwatch.jobs.aggregate.job import AggregateCore

    core = AggregateCore(config)
    result = BatchResult()
    table = aggregate_bins(core, files, from_ms, to_ms, result, json_column=json_column)
    rows = table.emittable(from_ms, to_ms)
    result.records = decode_lines(core.lines(table.take(rows), [0] * len(rows)))
    return result


def aggregate_bins(
    core: Any,
    files: Sequence[str],
    from_ms: int,
    to_ms: int,
    result: BatchResult,
    *,
    json_column: str | None = None,
) -> BinTable:
    """The bins that records touching ``[from_ms, to_ms)`` fill."""
    table = BinTable(core.spec)
    for chunk in run_on_files(core.conn, core.extraction, files, json_column):
        columns, _, rejected = core.columns(pa.Table.from_batches([chunk]))
        result.rows += chunk.num_rows
        result.rejected += rejected
        touching = (columns.end_ms >= from_ms) & (columns.start_ms < to_ms)
        if not touching.all():
            columns = columns.take(np.flatnonzero(touching))
        for cells in chunked_partials(core.spec, columns):
            table.add(cells)
    return table


def rollup_batch(
    config: Any, files: Sequence[str], from_ms: int, to_ms: int, json_column: str | None = None
) -> BatchResult:
    """A ``rollup`` job's bins starting in ``[from_ms, to_ms)``, from input bins in the files."""
    from gridwatch.jobs.rollup.job import RollupCore

    records = [decode_one(line) for line in iter_lines(files, json_column)]
    lines = RollupCore(config).batch(records, from_ms, to_ms)
    return BatchResult(decode_lines(lines), rows=len(records))


def run_batch(
    config: Any, files: Sequence[str], from_ms: int, to_ms: int, json_column: str | None = None
) -> BatchResult:
    """Run the job described by ``config`` over the files."""
    from gridwatch.jobs.accounting.job import AccountingConfig, accounting_batch
    from gridwatch.jobs.aggregate.job import AggregateConfig
    from gridwatch.jobs.rollup.job import RollupConfig

    if isinstance(config, AggregateConfig):
        return aggregate_batch(config, files, from_ms, to_ms, json_column)
    if isinstance(config, RollupConfig):
        return rollup_batch(config, files, from_ms, to_ms, json_column)
    if isinstance(config, AccountingConfig):
        result: BatchResult = accounting_batch(config, files, from_ms, to_ms, json_column)
        return result
    raise ConfigurationError(f"jobs of type {config.type!r} have no batch mode")
