"""The streaming jobs under a real `gridwatch run`, fed shuffled records and killed with
SIGKILL in between, give exactly the bins of `gridwatch batch` over the same records."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridwatch.bus import SqliteBus
from gridwatch.record import encode
from tests.conftest import SRC, GridwatchProcess
from tests.jobs_data import T0, transfer, transfers, write_ndjson

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "xrootd-transfers.yaml"
TOPIC = "xrootd_raw_transfers"
TEN_MIN = 600_000
DAY = 86_400_000


def pipeline_file(tmp_path: Path) -> Path:
    """The example pipeline, its generator replaced by records the test appends itself."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["sources"] = {"transfers": {"type": "generator", "limit": 0}}
    for job in doc["jobs"].values():
        job["commit_interval_s"] = 0.2
        job["max_batch_records"] = 200
    doc["sinks"] = {
        "out": {
            "type": "jsonl",
            "inputs": ["stats_10m", "stats_1d"],
            "directory": str(tmp_path / "out"),
            "commit_interval_s": 0.2,
        }
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def caught_up(bus: SqliteBus) -> bool:
    """Each group, in the order data flows, has committed everything there is.

    A group's offsets are read before the topic ends: offsets and ends only grow, so equality
    means the group had consumed (and published, atomically) everything at that moment.
    """
    wanted = {
        "job.stats_10m": [TOPIC],
        "job.stats_1d": ["xrootd_agg_transfer_stats_10m"],
        "sink.out": ["xrootd_agg_transfer_stats_10m", "xrootd_agg_transfer_stats_1d"],
    }
    for group, topics in wanted.items():
        offsets = bus.committed(group).offsets
        ends = {name: info.end for name, info in bus.topics().items()}
        if any(t not in ends or offsets.get(t) != ends[t] for t in topics):
            return False
    return True


def latest_bins(path: Path) -> dict[str, dict[str, Any]]:
    """Per _id, the data of the highest revision, without the revision number."""
    best: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        data = record["data"]
        known = best.get(record["_id"])
        if known is None or data["revision"] > known["revision"]:
            best[record["_id"]] = data
    return {rid: {k: v for k, v in d.items() if k != "revision"} for rid, d in best.items()}


def batch(
    pipeline: Path, job: str, source: Path | list[str], span: tuple[int, int], out: Path
) -> subprocess.CompletedProcess[str]:
    """``gridwatch batch`` over a file (``--input``) or other source arguments."""
    where = ["--input", str(source)] if isinstance(source, Path) else source
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", "batch", job, "--pipeline", str(pipeline),
         "--from", str(span[0]), "--to", str(span[1]), *where, "--output", str(out)],
        check=True,
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
    )  # fmt: skip


def test_shuffled_stream_with_sigkills_equals_batch(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    pipeline = pipeline_file(tmp_path)
    records = transfers(1500, seed=11)
    sentinel = transfer(10**6, random.Random(1), 1)
    sentinel.timestamp = T0 + 6 * 3_600_000
    sentinel.data.update(start_time=sentinel.timestamp, end_time=sentinel.timestamp)
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    data_dir = tmp_path / "data"
    bus = SqliteBus(data_dir / "bus.db")
    chunks = [shuffled[i : i + 250] for i in range(0, len(shuffled), 250)]
    proc = gridwatch_process(pipeline, data_dir).start()
    for index, chunk in enumerate(chunks):
        bus.append([(TOPIC, "transfers", [encode(r) for r in chunk])])
        if index in (1, 3):
            time.sleep(0.4)  # let it get half-way through, then kill it
            assert proc.kill() == -9
            proc = gridwatch_process(pipeline, data_dir).start()
    bus.append([(TOPIC, "transfers", [encode(sentinel)])])
    deadline = time.monotonic() + 90
    while not caught_up(bus):
        assert time.monotonic() < deadline, proc.log()[-3000:]
        time.sleep(0.3)
    assert proc.stop() == 0

    source = tmp_path / "records.jsonl"
    write_ndjson(source, [*records, sentinel])
    first_bin = min(r.data["start_time"] for r in records) // TEN_MIN * TEN_MIN
    last_bin = sentinel.timestamp // TEN_MIN * TEN_MIN
    batch(pipeline, "stats_10m", source, (first_bin, last_bin), tmp_path / "b10m.jsonl")
    stream_file = tmp_path / "out" / "xrootd_agg_transfer_stats_10m.jsonl"
    revisions = [
        json.loads(line)["data"]["revision"] for line in stream_file.read_text().splitlines()
    ]
    assert max(revisions) > 1  # shuffled input revised closed bins
    streamed = latest_bins(stream_file)
    streamed = {k: v for k, v in streamed.items() if v["window_start"] < last_bin}
    expected = latest_bins(tmp_path / "b10m.jsonl")
    assert len(expected) > 300
    assert streamed == expected

    day = T0 // DAY * DAY  # the first day is complete: the data runs past midnight
    batch(pipeline, "stats_1d", tmp_path / "b10m.jsonl", (day, day + DAY), tmp_path / "b1d.jsonl")
    daily = latest_bins(tmp_path / "out" / "xrootd_agg_transfer_stats_1d.jsonl")
    daily = {k: v for k, v in daily.items() if v["window_start"] == day}
    expected_daily = latest_bins(tmp_path / "b1d.jsonl")
    assert len(expected_daily) > 20
    assert daily == expected_daily


def test_batch_over_a_shared_archive_reads_only_the_jobs_input_datasets(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    """The README's archive holds sources, job outputs and dead letters under one root:
    ``--archive`` reads the datasets of the job's inputs only, and each record once."""
    pipeline = pipeline_file(tmp_path)
    doc = yaml.safe_load(pipeline.read_text())
    doc["sinks"]["archive"] = {
        "type": "parquet_archive",
        "inputs": ["transfers", "stats_10m", "stats_1d", "_deadletter"],
        "root": str(tmp_path / "archive"),
        "commit_interval_s": 0.2,
    }
    pipeline.write_text(yaml.safe_dump(doc, sort_keys=False))
    records = transfers(600, seed=3)
    data_dir = tmp_path / "data"
    bus = SqliteBus(data_dir / "bus.db")
    bus.append([(TOPIC, "transfers", [encode(r) for r in records])])
    bus.append([("gridwatch_raw_deadletter", "_deadletter", [b'{"broken": true}'])])
    proc = gridwatch_process(pipeline, data_dir).start()
    deadline = time.monotonic() + 90
    while not caught_up(bus):
        assert time.monotonic() < deadline, proc.log()[-3000:]
        time.sleep(0.3)
    assert proc.stop() == 0
    datasets = {
        p.relative_to(tmp_path / "archive").parts[:3]
        for p in (tmp_path / "archive").rglob("*.parquet")
    }
    assert ("xrootd", "agg", "transfer_stats_10m") in datasets  # the outputs share the root

    source = tmp_path / "records.jsonl"
    write_ndjson(source, records + records[:100])  # a file written twice in part
    span = (T0 - DAY, T0 + DAY)
    from_files, from_archive = tmp_path / "files.jsonl", tmp_path / "archive.jsonl"
    batch(pipeline, "stats_10m", source, span, from_files)
    archive = ["--archive", str(tmp_path / "archive"), "--data-dir", str(data_dir)]
    result = batch(pipeline, "stats_10m", archive, span, from_archive)
    assert "600 records read" in result.stderr
    expected = latest_bins(from_files)
    assert len(expected) > 50
    assert latest_bins(from_archive) == expected
    assert sum(b["ended"] for b in expected.values()) == 600  # the repeated lines count once
