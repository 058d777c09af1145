"""HTTP → bus → Parquet archive with real processes: drift, replay, DuckDB and SIGKILL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow.parquet as pq
import pytest

from gridwatch.bus import SqliteBus
from tests.conftest import SRC

pytestmark = pytest.mark.integration

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z
DAY = 86_400

PIPELINE = """
sources:
  in:
    type: http
    anonymous_producers: ["*"]
sinks:
  archive:
    type: parquet_archive
    inputs: [in]
    root: {root}
    roll_records: {roll_records}
    roll_interval_s: {roll_interval_s}
    max_batch_records: 500
    poll_interval_s: 0.05
"""


def start(
    gridwatch_process: Any,
    tmp_path: Path,
    roll_records: int = 100_000,
    roll_interval_s: float = 0.5,
) -> Any:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(
            root=tmp_path / "archive", roll_records=roll_records, roll_interval_s=roll_interval_s
        )
    )
    return gridwatch_process(pipeline, tmp_path / "data").start()


def post(url: str, envelopes: list[dict[str, Any]]) -> int:
    request = urllib.request.Request(  # noqa: S310
        url + "/ingest",
        data=json.dumps(envelopes).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_archived(proc: Any, timeout_s: float = 30) -> None:
    """Wait until the archive sink has taken everything on the bus (files may still be open)."""
    pattern = re.compile(r'gridwatch_bus_lag_records\{group="sink.archive"\} (\d+)')
    deadline = time.monotonic() + timeout_s
    lag = None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(proc.url + "/metrics") as response:  # noqa: S310
            match = pattern.search(response.read().decode())
        lag = int(match.group(1)) if match else None
        if lag == 0:
            return
        time.sleep(0.05)
    pytest.fail(f"the archive is {lag} records behind the bus")


def replay(root: Path, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "replay", str(root), *args],
        check=True,
        capture_output=True,
        env={"PYTHONPATH": str(SRC)},
        timeout=60,
    )
    return [msgspec.json.decode(line) for line in out.stdout.splitlines()]


def drifting(n: int) -> dict[str, Any]:
    """Envelopes whose payload schema changes from record to record."""
    data: dict[str, Any] = {"seq": n}
    match n % 5:
        case 0:
            data |= {"value": n, "site": "CERN-PROD", "tags": ["a", "b"]}
        case 1:
            data |= {"value": f"v{n}", "nested": {"deep": {"x": n, "y": [1.5, None]}}}
        case 2:
            data |= {"value": n + 0.25, "nested": {"deep": "flat now"}, "empty": {}}
        case 3:
            data |= {"value": None, "big": 2**63 + n, "flag": True, "list": [1, "two", {"3": 3}]}
        case _:
            data |= {"value": {"obj": n}, "unicode": "Ünïcødé ✓", "float": 1.0}
    envelope: dict[str, Any] = {
        "producer": "panda",
        "type": "jobs",
        "timestamp": (T0 + n * 3600) * 1000,
        "data": data,
    }
    if n % 3 == 0:
        envelope |= {"host": f"wn{n}.cern.ch", "version": "2", "idb_tags": ["site"]}
    if n % 7 == 0:
        envelope["type"] = "states"
    return envelope


def test_drifting_schemas_replay_exactly(gridwatch_process: Any, tmp_path: Path) -> None:
    proc = start(gridwatch_process, tmp_path)
    sent = [drifting(n) for n in range(120)]
    for start_ in range(0, 120, 17):
        assert post(proc.url, sent[start_ : start_ + 17]) == 200
    wait_archived(proc)
    assert proc.stop() == 0  # a clean stop commits and renames every file
    root = tmp_path / "archive"
    assert list(root.rglob("*.tmp")) == []
    got = {r["data"]["seq"]: r for r in replay(root, "--quiet")}
    assert sorted(got) == list(range(120))
    for envelope in sent:
        back = got[envelope["data"]["seq"]]
        assert back["data"] == envelope["data"]
        assert back["timestamp"] == envelope["timestamp"]
        for key in ("producer", "type", "host", "version", "idb_tags"):
            assert back.get(key) == envelope.get(key), key
        assert len(back["_id"]) == 32
    # exact types survive: 1.0 stays a float, 2**63+n stays an exact integer
    assert isinstance(got[4]["data"]["float"], float)
    assert got[3]["data"]["big"] == 2**63 + 3

    states = replay(root, "--type", "states", "--quiet")
    assert sorted(r["data"]["seq"] for r in states) == [n for n in range(120) if n % 7 == 0]
    window = replay(
        root, "--since", "2024-03-02T00:00:00Z", "--until", str(T0 + 2 * DAY), "--quiet"
    )
    assert sorted(r["data"]["seq"] for r in window) == list(range(24, 48))
    assert replay(root, "--producer", "nobody", "--quiet") == []

    bus_dir = tmp_path / "other"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gridwatch",
            "replay",
            str(root),
            "--type",
            "jobs",
            "--to-bus",
            str(bus_dir),
            "--origin",
            "in",
            "--quiet",
        ],
        check=True,
        env={"PYTHONPATH": str(SRC)},
        timeout=60,
    )
    bus = SqliteBus(bus_dir / "bus.db")
    on_bus = [
        msgspec.json.decode(line) for s in bus.read("panda_raw_jobs", 0, 10_000) for line in s.lines
    ]
    assert sorted(r["data"]["seq"] for r in on_bus) == [n for n in range(120) if n % 7]
    assert bus.topics_from(["in"]) == ["panda_raw_jobs"]


def test_duckdb_reads_days_and_months_with_types(gridwatch_process: Any, tmp_path: Path) -> None:
    proc = start(gridwatch_process, tmp_path)
    days = [T0, T0 + DAY, T0 + 31 * DAY]  # 2024-03-01, 2024-03-02, 2024-04-01
    for day_index, day in enumerate(days):
        batch = [
            {
                "producer": "xrootd",
                "type": "transfers",
                "timestamp": day + i * 60,
                "data": {
                    "read_bytes": 1000 * i + day_index,
                    "client_domain": "cern.ch",
                    "duration_s": 1.5 * i,
                    "ok": i % 2 == 0,
                },
            }
            for i in range(50)
        ]
        assert post(proc.url, batch) == 200
    wait_archived(proc)
    assert proc.stop() == 0
    base = tmp_path / "archive" / "xrootd" / "raw" / "transfers"
    con = duckdb.connect()
    one_day = f"read_parquet('{base}/2024/03/02/*.parquet', union_by_name=true)"
    month = f"read_parquet('{base}/2024/03/*/*.parquet', union_by_name=true)"
    assert con.execute(f"SELECT count(*), sum(data.read_bytes) FROM {one_day}").fetchone() == (
        50,
        sum(1000 * i + 1 for i in range(50)),
    )
    assert con.execute(f"SELECT count(*) FROM {month}").fetchone() == (100,)
    types = dict(
        con.execute(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT timestamp, data.read_bytes AS "
            f"read_bytes, data.duration_s AS duration_s, data.ok AS ok, data.client_domain AS "
            f"client_domain FROM {month})"
        ).fetchall()
    )
    assert types == {
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "read_bytes": "BIGINT",
        "duration_s": "DOUBLE",
        "ok": "BOOLEAN",
        "client_domain": "VARCHAR",
    }
    assert con.execute(
        f"SELECT min(epoch_ms(timestamp)), max(epoch_ms(timestamp)) FROM {one_day}"
    ).fetchone() == ((T0 + DAY) * 1000, (T0 + DAY + 49 * 60) * 1000)


def test_sigkill_while_ingesting_loses_and_duplicates_nothing(
    gridwatch_process: Any, tmp_path: Path
) -> None:
    proc = start(gridwatch_process, tmp_path, roll_records=300, roll_interval_s=0.5)
    acked: list[int] = []
    attempted: list[int] = []
    stop = threading.Event()

    def sender(url: str, first: int) -> None:
        n = first
        while not stop.is_set():
            batch = [
                {
                    "producer": "panda",
                    "type": "jobs",
                    "timestamp": T0 + n + i,
                    "data": {"seq": n + i, "pad": "x" * 200},
                }
                for i in range(100)
            ]
            attempted.extend(range(n, n + 100))
            try:
                if post(url, batch) == 200:
                    acked.extend(range(n, n + 100))
            except OSError:
                return
            n += 100

    thread = threading.Thread(target=sender, args=(proc.url, 0))
    thread.start()
    deadline = time.monotonic() + 30
    root = tmp_path / "archive"
    while len(list(root.rglob("*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()  # SIGKILL, mid-stream, with files open
    stop.set()
    thread.join()
    assert len(acked) >= 300
    killed_with_tmp = list(root.rglob("*.tmp"))

    again = start(gridwatch_process, tmp_path, roll_records=300, roll_interval_s=0.5)
    more = [
        {
            "producer": "panda",
            "type": "jobs",
            "timestamp": T0 + 10**6 + i,
            "data": {"seq": 10**6 + i},
        }
        for i in range(100)
    ]
    assert post(again.url, more) == 200
    wait_archived(again)
    assert again.stop() == 0
    assert list(root.rglob("*.tmp")) == []
    seqs = [
        msgspec.json.decode(e)["data"]["seq"]
        for f in root.rglob("*.parquet")
        for e in pq.read_table(f, columns=["envelope"]).column("envelope").to_pylist()
    ]
    assert len(seqs) == len(set(seqs)), "no record twice in closed files"
    assert set(acked) | set(range(10**6, 10**6 + 100)) <= set(seqs), "no acknowledged loss"
    assert set(seqs) <= set(attempted) | set(range(10**6, 10**6 + 100))
    assert killed_with_tmp or len(acked) < len(attempted), "the kill hit work in progress"
