"""``parquet_archive``: the long-term archive, Parquet files in date folders (seed 000's HDFS sink).

Records go to ``{root}/{producer}/{type_prefix}/{type}/{YYYY}/{MM}/{DD}/`` by their own
timestamp (UTC). Each partition has one open ``.tmp`` file that batches are appended to as row
groups (zstd). Files roll, as Flume's HDFS sink does, by record count, size and age; a roll is
a commit of the sink: every open file is closed and fsynced, the renames still to do are
checkpointed with the consumed bus offsets, then the files are renamed. After a crash,
:meth:`ParquetArchiveSink.open` completes the checkpointed renames and deletes the other
``.tmp`` files this writer left, whose records are read again from the bus (their offsets were
never committed): nothing is lost and nothing is duplicated in closed files.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from gridwatch.archive.layout import Partition, file_name, tmp_name
from gridwatch.archive.tables import Incompatible, conform, lines_to_table, unify
from gridwatch.components import Batch, Context, Sink, SinkConfig, WriteResult

log = logging.getLogger(__name__)
JOURNAL = "open-files.txt"


class ParquetArchiveConfig(SinkConfig):
    """Settings of the ``parquet_archive`` sink."""

    root: Path = Field(description="The archive's root directory.")
    roll_records: int = Field(
        1_000_000, ge=1, description="Close a file after this many records (Flume's rollCount)."
    )
    roll_bytes: int = Field(
        256 * 1024**2, ge=1024, description="Close a file once it is this large (rollSize)."
    )
    roll_interval_s: float = Field(
        300.0, gt=0, description="Close a file this long after it was opened (rollInterval)."
    )
    zstd_level: int = Field(3, ge=1, le=22, description="zstd compression level.")
    host: str | None = Field(
        None, description="Host name in the file names (default: this machine's)."
    )
    max_batch_records: int = Field(
        20_000, ge=1, description="Records read from the bus per write (one row group at most)."
    )


@dataclass
class OpenFile:
    """A partition's file being written."""

    tmp: Path
    final: Path
    handle: pa.NativeFile
    writer: pq.ParquetWriter
    schema: pa.Schema
    opened_at: float
    records: int = 0


class ParquetArchiveSink(Sink):
    """Archives the bus to Parquet; see the module documentation for the commit protocol."""

    Config = ParquetArchiveConfig
    config: ParquetArchiveConfig

    def __init__(self, component_id: str, config: ParquetArchiveConfig, context: Context) -> None:
        super().__init__(component_id, config, context)
        self.root = config.root
        self.host = config.host or context.host
        self.files: dict[Partition, OpenFile] = {}
        self.closed: list[tuple[Path, Path]] = []
        self.committing: list[tuple[Path, Path]] = []
        self.next_sequence = 0
        self.journal_path = context.state_dir(component_id) / JOURNAL

    # -- lifecycle -----------------------------------------------------------------------

    def open(self, state: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = state or {}
        self.next_sequence = int(state.get("next_sequence", 0))
        pending = [(self.root / tmp, self.root / final) for tmp, final in state.get("pending", [])]
        self._rename(pending)
        keep = {tmp for tmp, _ in pending}
        stale = 0
        if self.journal_path.exists():
            for line in self.journal_path.read_text().splitlines():
                path = self.root / line
                if line and path not in keep and path.exists():
                    path.unlink()
                    stale += 1
        if stale:
            log.info("%s: deleted %d unfinished files; the bus has their records", self.id, stale)
        self.journal = self.journal_path.open("w")

    def close(self) -> None:
        # Uncommitted files are abandoned: their records come again from the bus.
        for open_file in self.files.values():
            open_file.handle.close()
        self.files.clear()
        self.journal.close()

    # -- writing -------------------------------------------------------------------------

    def write(self, batch: Batch) -> WriteResult:
        table, rejected = lines_to_table(batch.lines)
        for partition, rows in _partitions(table):
            self._append(partition, rows)
        return WriteResult(rejected)

    def _append(self, partition: Partition, rows: pa.Table) -> None:
        open_file = self.files.get(partition)
        if open_file is not None:
            try:
                fitted = conform(rows, open_file.schema)
            except Incompatible as exc:
                log.info("%s: schema drift in %s (%s); rolling", self.id, open_file.tmp.name, exc)
                schema = unify(open_file.schema, rows.schema)
                self._close(partition)
            else:
                open_file.writer.write_table(fitted)
                open_file.records += len(fitted)
                return
        else:
            schema = rows.schema
        try:
            fitted = conform(rows, schema)
        except Incompatible:
            fitted, schema = rows, rows.schema
        open_file = self._open(partition, schema)
        open_file.writer.write_table(fitted)
        open_file.records += len(fitted)

    def _open(self, partition: Partition, schema: pa.Schema) -> OpenFile:
        directory = self.root / partition.directory()
        directory.mkdir(parents=True, exist_ok=True)
        while True:
            name = file_name(self.host, self.id, self.next_sequence)
            self.next_sequence += 1
            if not (directory / name).exists():
                break
        tmp = directory / tmp_name(name)
        # Journal first, so that a crash can never leave a .tmp file nobody knows about.
        self.journal.write(f"{tmp.relative_to(self.root)}\n")
        self.journal.flush()
        # An Arrow file, not a Python one: the writer then never needs the GIL to write.
        handle = pa.OSFile(str(tmp), "wb")
        writer = pq.ParquetWriter(
            handle,
            schema,
            compression="zstd",
            compression_level=self.config.zstd_level,
            write_statistics=["timestamp", "_id"],
        )
        open_file = OpenFile(tmp, directory / name, handle, writer, schema, time.monotonic())
        self.files[partition] = open_file
        return open_file

    def _close(self, partition: Partition) -> None:
        open_file = self.files.pop(partition)
        open_file.writer.close()
        open_file.handle.flush()
        os.fsync(open_file.handle.fileno())
        open_file.handle.close()
        self.closed.append((open_file.tmp, open_file.final))

    # -- committing ----------------------------------------------------------------------

    def commit_due(self, seconds_since_commit: float) -> bool:
        now = time.monotonic()
        cfg = self.config
        return any(
            f.records >= cfg.roll_records
            or f.handle.tell() >= cfg.roll_bytes
            or now - f.opened_at >= cfg.roll_interval_s
            for f in self.files.values()
        )

    def prepare_commit(self) -> Any:
        for partition in list(self.files):
            self._close(partition)
        self.committing = list(self.closed)
        pending = [
            [str(tmp.relative_to(self.root)), str(final.relative_to(self.root))]
            for tmp, final in self.committing
        ]
        return {"next_sequence": self.next_sequence, "pending": pending}

    def finish_commit(self) -> None:
        self._rename(self.committing)
        done = set(self.committing)
        self.closed = [pair for pair in self.closed if pair not in done]
        self.committing = []
        if not self.files and not self.closed:
            self.journal.seek(0)
            self.journal.truncate()

    def _rename(self, pairs: list[tuple[Path, Path]]) -> None:
        directories: set[Path] = set()
        for tmp, final in pairs:
            if tmp.exists():
                tmp.replace(final)
                directories.add(final.parent)
            elif not final.exists():
                log.error("%s: %s vanished before it was renamed", self.id, tmp)
        for directory in directories:
            _fsync_directory(directory)


def _partitions(table: pa.Table) -> list[tuple[Partition, pa.Table]]:
    """Split rows by dataset and day; the ``_day`` helper column is dropped."""
    if len(table) == 0:
        return []
    keys = ["producer", "type_prefix", "type", "_day"]
    rows = table.drop_columns(["_day"])
    first = [table.column(k)[0].as_py() for k in keys]
    if all(pc.all(pc.equal(table.column(k), v)).as_py() for k, v in zip(keys, first, strict=True)):
        return [(Partition(*first), rows)]
    groups = table.select(keys).group_by(keys).aggregate([])
    out: list[tuple[Partition, pa.Table]] = []
    for key in groups.to_pylist():
        mask = None
        for name in keys:
            equal = pc.equal(table.column(name), key[name])
            mask = equal if mask is None else pc.and_(mask, equal)
        out.append((Partition(*(key[k] for k in keys)), rows.filter(mask)))
    return out


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
