"""Golden tests: fixed input files -> expected output records, for every job type."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from gridwatch.batch import run_batch
from gridwatch.config import load_pipeline
from gridwatch.jobs.enrich.job import enrich
from gridwatch.jobs.enrich.reference import load_table
from gridwatch.record import decode_lines, encode

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "jobs"
EXAMPLE = ROOT / "examples" / "xrootd-transfers.yaml"
FROM, TO = 1_714_521_600_000, 1_714_694_400_000  # 2024-05-01 .. 2024-05-03


def job_config(pipeline: Path, job: str) -> Any:
    return load_pipeline(pipeline).components[job].config


def lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def batch_lines(pipeline: Path, job: str, inputs: list[Path]) -> list[bytes]:
    result = run_batch(job_config(pipeline, job), [str(p) for p in inputs], FROM, TO)
    assert result.rejected == []
    return [encode(r) for r in result.records]


def test_ten_minute_transfer_statistics(tmp_path: Path) -> None:
    out = batch_lines(EXAMPLE, "stats_10m", [DATA / "transfers.jsonl"])
    assert out == lines(DATA / "expected_stats_10m.jsonl")
    # Independently of the golden file: all bytes are accounted, spread over the bins.
    transfers = decode_lines(lines(DATA / "transfers.jsonl"))
    total = sum(t.data["read_bytes"] + t.data["written_bytes"] for t in transfers)
    assert sum(json.loads(line)["data"]["bytes"] for line in out) == total
    assert sum(json.loads(line)["data"]["ended"] for line in out) == len(transfers)


def test_daily_bins_from_ten_minute_bins(tmp_path: Path) -> None:
    tens = tmp_path / "tens.jsonl"
    tens.write_bytes(b"\n".join(lines(DATA / "expected_stats_10m.jsonl")) + b"\n")
    out = batch_lines(EXAMPLE, "stats_1d", [tens])
    assert out == lines(DATA / "expected_stats_1d.jsonl")
    days: dict[tuple[Any, ...], int] = defaultdict(int)
    for line in lines(DATA / "expected_stats_10m.jsonl"):
        data = json.loads(line)["data"]
        days[(data["window_start"] // 86_400_000, data["src_domain"], data["activity"])] += data[
            "bytes"
        ]
    rolled: dict[tuple[Any, ...], int] = defaultdict(int)
    for line in out:
        data = json.loads(line)["data"]
        rolled[(data["window_start"] // 86_400_000, data["src_domain"], data["activity"])] += data[
            "bytes"
        ]
    assert rolled == days


def test_point_statistics_with_quantiles() -> None:
    pipeline = DATA / "pipeline.yaml"
    out = batch_lines(pipeline, "durations", [DATA / "transfers.jsonl"])
    assert out == lines(DATA / "expected_durations.jsonl")
    # Recompute count, sum, min, max and mean in plain Python.
    groups: dict[tuple[int, str], list[float]] = defaultdict(list)
    for t in decode_lines(lines(DATA / "transfers.jsonl")):
        end = t.data["end_time"] if t.data["end_time"] is not None else t.data["start_time"]
        groups[(t.timestamp // 3_600_000 * 3_600_000, t.data["user_protocol"])].append(
            (end - t.data["start_time"]) / 1000
        )
    assert len(out) == len(groups)
    for line in out:
        data = json.loads(line)["data"]
        values = groups[(data["window_start"], data["user_protocol"])]
        assert data["count"] == len(values)
        assert data["n_seconds"] == pytest.approx(sum(values), abs=1e-9)
        assert data["min_s"] == min(values) and data["max_s"] == max(values)
        assert data["mean_s"] == pytest.approx(sum(values) / len(values))
        ordered = sorted(values)
        exact = ordered[int(0.9 * (len(values) - 1))]
        assert data["p90_s"] == pytest.approx(exact, rel=0.021, abs=1e-9)


def test_accounting_snapshots() -> None:
    pipeline = DATA / "pipeline.yaml"
    out = batch_lines(pipeline, "jobs_accounting", [DATA / "panda.jsonl"])
    assert out == lines(DATA / "expected_accounting.jsonl")
    # The snapshot at T counts each job's latest state among updates before T.
    updates = decode_lines(lines(DATA / "panda.jsonl"))
    for line in out:
        record = json.loads(line)
        at = record["timestamp"]
        latest: dict[int, Any] = {}
        for u in sorted(updates, key=lambda u: u.data["modificationtime"]):
            if u.data["modificationtime"] < at:
                latest[u.data["pandaid"]] = u.data
        data = record["data"]
        matching = [
            u
            for u in latest.values()
            if u["jobstatus"] == data["state"]
            and u["computingsite"] == data["computingsite"]
            and not (
                u["jobstatus"] in ("finished", "failed") and u["modificationtime"] < at - 3_600_000
            )
        ]
        assert data["count"] == len(matching), record
        assert data["nevents"] == sum(u["nevents"] for u in matching)


def test_enrichment_with_a_csv_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)  # table paths are relative to the working directory
    config = job_config(DATA / "pipeline.yaml", "sites")
    tables = {name: load_table(t) for name, t in config.tables.items()}
    records = decode_lines(lines(DATA / "panda.jsonl"))[:6]
    out, missed = enrich(records, tables, config)
    got = [
        (
            r.type_prefix,
            r.id,
            r.data["computingsite"],
            r.data.get("cloud"),
            r.data.get("tier"),
            r.data.get("enrich_unknown"),
        )
        for r in out
    ]
    expected = []
    for r in records:
        site = r.data["computingsite"]
        known = {"CERN-PROD": ("CERN", "0"), "BNL-ATLAS": ("US", "1")}.get(site)
        expected.append(
            (
                "enr",
                r.id,
                site,
                known[0] if known else None,
                known[1] if known else None,
                None if known else ["topology"],
            )
        )
    assert got == expected
    assert missed == sum(1 for e in expected if e[5])
    assert missed > 0
