"""``gridwatch run`` with a schedule, driven as a user: tasks CLI, API, reload by command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import GridwatchProcess
from tests.conftest import run_cli as gridwatch

pytestmark = pytest.mark.e2e

COLLECTOR = """
def collect(site):
    print("polling", site)
    return [{"producer": "eventindex", "type": "status", "data": {"site": site, "n": n}}
            for n in range(3)]
"""

PIPELINE = """\
schedule:
  tasks:
    eventindex:
      schedule: "R//PT1S"
      collector: ei_collector:collect
      collector_args: {{site: CERN-PROD}}
      working_dir: {dir}
    {second}:
      parents: [eventindex]
      command: [sh, -c, "echo report for $GRIDWATCH_SLOT_MS"]
sinks:
  files:
    type: jsonl
    inputs: [eventindex]
    directory: {dir}/out
"""


def wait_for(check: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_schedule_runs_with_the_pipeline_and_reloads(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    (tmp_path / "ei_collector.py").write_text(COLLECTOR)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(dir=tmp_path, second="report"))
    proc = gridwatch_process(pipeline, tmp_path / "data").start()
    url = ["--url", proc.url]

    def report_ran() -> bool:
        return "succeeded" in gridwatch("tasks", *url, "runs", "report").stdout

    wait_for(report_ran)
    listing = gridwatch("tasks", *url, "list")
    assert listing.returncode == 0, listing.stderr
    assert "(leader, token 1)" in listing.stdout
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[2:]}
    assert set(lines) == {"eventindex", "report"}
    assert lines["eventindex"].split()[1] == "task"

    wait_for(lambda: "succeeded" in gridwatch("tasks", *url, "runs", "eventindex").stdout)
    logs = gridwatch("tasks", *url, "logs", "eventindex")
    assert logs.stdout == "polling CERN-PROD\n"
    report_logs = gridwatch("tasks", *url, "logs", "report").stdout
    assert report_logs.startswith("report for ")

    manual = gridwatch("tasks", *url, "run", "report")
    assert manual.stdout.strip() == "report: started"
    wait_for(lambda: "manual" in gridwatch("tasks", *url, "runs", "report").stdout)
    missing = gridwatch("tasks", *url, "run", "nope")
    assert missing.returncode == 2 and "404" in missing.stderr

    out = tmp_path / "out" / "eventindex_raw_status.jsonl"
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 3)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["producer"] == "eventindex" and first["data"]["site"] == "CERN-PROD"

    # Rename the dependent task and reload: the old one stops, the new one runs.
    pipeline.write_text(PIPELINE.format(dir=tmp_path, second="summary"))
    reloaded = gridwatch("reload", str(pipeline), "--data-dir", str(tmp_path / "data"))
    assert reloaded.returncode == 0, reloaded.stderr
    wait_for(lambda: "succeeded" in gridwatch("tasks", *url, "runs", "summary").stdout)
    api = json.loads(gridwatch("tasks", *url, "--json", "list").stdout)
    assert [t["id"] for t in api["tasks"]] == ["eventindex", "summary"]
    report_runs = len(gridwatch("tasks", *url, "runs", "report").stdout.splitlines())
    time.sleep(1.5)
    assert len(gridwatch("tasks", *url, "runs", "report").stdout.splitlines()) == report_runs

    pipeline.write_text("schedule:\n  tasks:\n    broken: {schedule: 'R/2016/P1.5D'}\n")
    refused = gridwatch("reload", str(pipeline), "--data-dir", str(tmp_path / "data"))
    assert refused.returncode == 1
    assert "the period 'P1.5D' is not an ISO 8601 duration" in refused.stderr
    assert proc.stop() == 0
    assert "reload applied: report, summary" in proc.log()
