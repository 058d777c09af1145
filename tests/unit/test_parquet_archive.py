"""The archive sink's tables and commit protocol, driven directly (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gridwatch.archive.tables import lines_to_table
from gridwatch.bus import SqliteBus
from gridwatch.components import Batch, Context
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder, encode_lines
from gridwatch.sinks.parquet_archive.sink import ParquetArchiveSink

DAY_S = 86_400
T0 = 1_709_251_200  # 2024-03-01T00:00:00Z


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context(
        tmp_path, Metrics(), SqliteBus(tmp_path / "bus.db"), EnvelopeDecoder(), host="arc01"
    )


def lines(*payloads: dict[str, Any], ts: int = T0) -> list[bytes]:
    envelopes = [
        {"producer": "panda", "type": "jobs", "timestamp": ts + i, "data": p}
        for i, p in enumerate(payloads)
    ]
    return encode_lines(EnvelopeDecoder().decode_objects(envelopes).records)


def sink(context: Context, tmp_path: Path, state: Any = None, **config: Any) -> ParquetArchiveSink:
    cfg = ParquetArchiveSink.Config(
        type="parquet_archive", inputs=["in"], root=tmp_path / "archive", **config
    )
    s = ParquetArchiveSink("arch", cfg, context)
    s.open(state)
    return s


def closed_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def tmp_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tmp"))


def envelopes(root: Path) -> list[str]:
    return [e for f in closed_files(root) for e in pq.read_table(f).column("envelope").to_pylist()]


def test_conflicting_types_in_one_batch_become_json_text() -> None:
    table, rejected = lines_to_table(
        lines({"x": 1, "y": {"a": 1}, "e": {}}, {"x": "one", "y": {"a": "b"}}, {"x": None})
    )
    assert rejected == []
    data = table.column("data").combine_chunks()
    assert data.type.field("x").type == pa.string()
    assert data.field("x").to_pylist() == ["1", '"one"', None]
    assert "e" not in [f.name for f in data.type], "empty objects cannot be Parquet columns"
    assert table.column("type_prefix").to_pylist() == ["raw"] * 3


def test_lines_that_are_not_envelopes_are_rejected_alone() -> None:
    good = lines({"x": 1}, {"x": 2})
    table, rejected = lines_to_table([good[0], b"{not json", good[1]])
    assert [index for index, _ in rejected] == [1]
    assert table.column("envelope").to_pylist() == [g.decode() for g in good]


def test_envelope_column_holds_each_line_exactly() -> None:
    batch = lines({"site": "Zürich", "note": "a\nb", "emoji": "🛰"}, {"n": 2}, {})
    table, rejected = lines_to_table(batch)
    assert rejected == []
    assert table.column("envelope").type == pa.string()
    assert table.column("envelope").to_pylist() == [line.decode() for line in batch]


def test_partitions_by_day_and_rolls_on_drift(context: Context, tmp_path: Path) -> None:
    s = sink(context, tmp_path)
    first = lines({"n": 1, "site": "CERN"}, ts=T0)
    drift = lines({"n": "two", "extra": [1, 2]}, ts=T0 + 10)
    widen = lines({"n": 3.5}, ts=T0 + 20)
    next_day = lines({"n": 4}, ts=T0 + DAY_S)
    for batch in (first, drift, widen, next_day):
        assert s.write(Batch("panda_raw_jobs", batch)).rejected == []
    state = s.prepare_commit()
    assert closed_files(s.root) == [], "nothing is renamed before the offsets are stored"
    s.finish_commit()
    names = [str(p.relative_to(s.root)) for p in closed_files(s.root)]
    assert names == [
        "panda/raw/jobs/2024/03/01/arc01-arch-0000000000.parquet",
        "panda/raw/jobs/2024/03/01/arc01-arch-0000000001.parquet",
        "panda/raw/jobs/2024/03/02/arc01-arch-0000000002.parquet",
    ]
    assert state["next_sequence"] == 3
    assert sorted(envelopes(s.root)) == sorted(e.decode() for e in first + drift + widen + next_day)
    assert tmp_files(s.root) == []


def test_crash_after_prepare_completes_the_renames(context: Context, tmp_path: Path) -> None:
    s = sink(context, tmp_path)
    s.write(Batch("panda_raw_jobs", lines({"n": 1}, {"n": 2})))
    state = s.prepare_commit()  # the runtime stores this with the offsets, then we "crash"
    assert len(tmp_files(s.root)) == 1
    restarted = sink(context, tmp_path, state)
    assert tmp_files(restarted.root) == []
    assert len(envelopes(restarted.root)) == 2


def test_crash_before_commit_deletes_unfinished_files(context: Context, tmp_path: Path) -> None:
    s = sink(context, tmp_path)
    s.write(Batch("panda_raw_jobs", lines({"n": 1})))
    committed = s.prepare_commit()
    s.finish_commit()
    s.write(Batch("panda_raw_jobs", lines({"n": 2}, ts=T0 + 5)))
    s.write(Batch("panda_raw_jobs", lines({"n": 3}, ts=T0 + 2 * DAY_S)))
    s.prepare_commit()  # closed but never checkpointed: the bus will send these again
    assert len(tmp_files(s.root)) == 2
    restarted = sink(context, tmp_path, committed)
    assert tmp_files(restarted.root) == []
    assert [e for e in envelopes(restarted.root) if '"n":' in e] == [lines({"n": 1})[0].decode()]
    restarted.write(Batch("panda_raw_jobs", lines({"n": 2}, ts=T0 + 5)))
    restarted.prepare_commit()
    restarted.finish_commit()
    assert len(envelopes(restarted.root)) == 2


def test_commit_due_follows_the_roll_settings(context: Context, tmp_path: Path) -> None:
    s = sink(context, tmp_path, roll_records=3, roll_interval_s=3600)
    s.write(Batch("panda_raw_jobs", lines({"n": 1}, {"n": 2})))
    assert not s.commit_due(10_000)
    s.write(Batch("panda_raw_jobs", lines({"n": 3}, ts=T0 + 5)))
    assert s.commit_due(0)
    by_size = sink(context, tmp_path, roll_bytes=1024)
    by_size.write(Batch("panda_raw_jobs", lines(*({"text": "x" * 100, "i": i} for i in range(50)))))
    assert by_size.commit_due(0)
    by_age = sink(context, tmp_path, roll_interval_s=0.01)
    by_age.write(Batch("panda_raw_jobs", lines({"n": 1})))
    import time

    time.sleep(0.02)
    assert by_age.commit_due(0)
