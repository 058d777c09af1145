"""Not every input goes to every output: a ``filter`` transform and consumer-side patterns."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import GridwatchProcess

pytestmark = pytest.mark.integration
TOTAL = 3000


def lines_in(directory: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for file in sorted(directory.glob("*.jsonl"))
        for line in file.read_bytes().splitlines()
        if line
    ]


def test_a_filter_and_producer_patterns_route_records(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""
sources:
  grid:
    type: generator
    kinds: [panda, xrootd]
    rate_per_s: 20000
    limit: {TOTAL}
transforms:
  cern:
    type: filter
    inputs: [grid]
    types: [transfers]
    fields: {{server_domain: [cern.ch]}}
sinks:
  cern_transfers:
    type: jsonl
    inputs: [cern]
    directory: {tmp_path / "cern"}
    commit_interval_s: 0.1
  panda_only:
    type: jsonl
    inputs: [grid]
    producers: ["pan*"]
    directory: {tmp_path / "panda"}
    commit_interval_s: 0.1
  everything:
    type: jsonl
    inputs: [grid]
    directory: {tmp_path / "all"}
    commit_interval_s: 0.1
""")
    process = gridwatch_process(path, tmp_path / "data").start()
    deadline = time.monotonic() + 60
    while len(lines_in(tmp_path / "all")) < TOTAL and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    assert process.stop() == 0
    everything = lines_in(tmp_path / "all")
    assert len(everything) == TOTAL
    expected_cern = [
        r
        for r in everything
        if r["type"] == "transfers" and r["data"]["server_domain"] == "cern.ch"  # type: ignore[index]
    ]
    assert 0 < len(expected_cern) < TOTAL
    assert sorted(r["_id"] for r in lines_in(tmp_path / "cern")) == sorted(
        r["_id"] for r in expected_cern
    )
    panda = lines_in(tmp_path / "panda")
    assert {r["producer"] for r in panda} == {"panda"}
    assert len(panda) == sum(1 for r in everything if r["producer"] == "panda")
