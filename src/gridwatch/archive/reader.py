"""Reading the archive back: the exact envelope lines of the records that match a filter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gridwatch.archive.layout import ArchiveFilter, Partition, archive_files
from gridwatch.record import topic_name

READ_BATCH_ROWS = 20_000


@dataclass
class Chunk:
    """Envelope lines read from one archive file, with the bus topic they belong to."""

    path: Path
    topic: str
    lines: list[bytes]


def plan(root: Path, where: ArchiveFilter) -> list[tuple[Path, Partition]]:
    """The files a replay reads, in order (for progress: their count and sizes)."""
    if not root.is_dir():
        raise FileNotFoundError(f"no archive at {root}")
    return list(archive_files(root, where))


def read_chunks(files: list[tuple[Path, Partition]], where: ArchiveFilter) -> Iterator[Chunk]:
    """The matching envelope lines of ``files``, file by file, in row order."""
    for path, partition in files:
        topic = topic_name(partition.producer, partition.type_prefix, partition.type)
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(
            batch_size=READ_BATCH_ROWS, columns=["timestamp", "envelope"]
        ):
            envelopes = _select(batch, where)
            if len(envelopes):
                yield Chunk(path, topic, [line.encode() for line in envelopes.to_pylist()])


def _select(batch: pa.RecordBatch, where: ArchiveFilter) -> pa.Array:
    envelopes = batch.column("envelope")
    if where.since_ms is None and where.until_ms is None:
        return envelopes
    millis = batch.column("timestamp").cast(pa.int64())
    mask = None
    if where.since_ms is not None:
        mask = pc.greater_equal(millis, where.since_ms)
    if where.until_ms is not None:
        before = pc.less(millis, where.until_ms)
        mask = before if mask is None else pc.and_(mask, before)
    return envelopes.filter(mask)
