"""A running gridwatch: reload of every section, configuration errors, SIGTERM at any moment."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GridwatchProcess, free_port, run_cli

pytestmark = pytest.mark.integration

BASE = """
sources:
  grid:
    type: generator
    rate_per_s: 200
sinks:
  keep:
    type: jsonl
    inputs: [grid]
    directory: {tmp}/keep
    commit_interval_s: 0.1
"""
MODULES = """
    modules:
      ei_import:
        degraded_after_s: 30
        checks:
          - {field: files_waiting, degraded_above: 300}
"""


def health(process: GridwatchProcess) -> dict[str, Any]:
    with urllib.request.urlopen(process.url + "/health", timeout=5) as answer:  # noqa: S310
        result: dict[str, Any] = json.load(answer)
    return result


def metrics(process: GridwatchProcess) -> str:
    with urllib.request.urlopen(process.url + "/metrics", timeout=5) as answer:  # noqa: S310
        return answer.read().decode()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def states(process: GridwatchProcess) -> dict[str, str]:
    return {cid: c["state"] for cid, c in health(process)["components"].items()}


def test_reload_starts_stops_and_restarts_each_section_and_leaves_the_rest(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        BASE.format(tmp=tmp_path)
        + f"""  gone:
    type: jsonl
    inputs: [grid]
    directory: {tmp_path}/gone
  changed:
    type: jsonl
    inputs: [grid]
    directory: {tmp_path}/changed-before
"""
    )
    process = gridwatch_process(path, tmp_path / "data").start()
    wait_for(lambda: set(states(process).values()) == {"running"}, "everything running")
    # Every section changes at once: a source and a transform and a job are added, a sink
    # removed, a sink changed, and `keep` and `grid` stay as they were.
    path.write_text(
        BASE.format(tmp=tmp_path)
        + f"""  changed:
    type: jsonl
    inputs: [cern, more]
    directory: {tmp_path}/changed-after
    commit_interval_s: 0.1
  statuses:
    type: jsonl
    inputs: [status]
    directory: {tmp_path}/statuses
  more_source:
    type: jsonl
    inputs: [more]
    directory: {tmp_path}/more
transforms:
  cern:
    type: filter
    inputs: [grid]
    producers: [panda]
jobs:
  status:
    type: module_status
    inputs: [grid]
    evaluate_interval_s: 0.2
{MODULES}"""
        + """
"""
    )
    text = path.read_text().replace(
        "sinks:", "  more:\n    type: generator\n    rate_per_s: 50\n    seed: 2\nsinks:", 1
    )
    path.write_text(text)
    assert run_cli("validate", str(path)).returncode == 0
    before = health(process)["components"]
    process.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    after_ids = {"grid", "more", "keep", "changed", "statuses", "more_source", "cern", "status"}
    wait_for(
        lambda: (
            set(states(process)) == after_ids
            and all(s == "running" for s in states(process).values())
        ),
        "the reloaded pipeline to run",
    )
    after = health(process)["components"]
    assert after["keep"]["starts"] == before["keep"]["starts"] == 1
    assert after["grid"]["starts"] == 1
    wait_for(lambda: any((tmp_path / "changed-after").glob("*.jsonl")), "the changed sink")
    wait_for(lambda: any((tmp_path / "more").glob("*.jsonl")), "the added source's records")
    wait_for(lambda: any((tmp_path / "statuses").glob("*.jsonl")), "the added job's output")
    assert 'gridwatch_bus_lag_records{group="job.status"}' in metrics(process)
    # A file with a mistake is refused whole: nothing stops, nothing starts.
    path.write_text(text.replace("type: filter", "type: no_such_transform"))
    process.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_for(lambda: "reload refused" in process.log(), "the refusal in the log")
    assert set(states(process)) == after_ids
    assert "no_such_transform" in process.log()
    assert process.stop() == 0


def test_a_configuration_error_fails_its_component_and_the_others_run(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        BASE.format(tmp=tmp_path)
        + """  influx:
    type: influxdb
    inputs: [grid]
    url: ftp://127.0.0.1:1
    database: monit
"""
    )
    process = gridwatch_process(path, tmp_path / "data").start()
    wait_for(lambda: states(process).get("influx") == "failed", "influx to fail")
    answer = health(process)
    assert answer["status"] == "degraded"
    assert "is not http(s)://HOST" in answer["components"]["influx"]["reason"]
    time.sleep(1.5)  # a failed component is not restarted
    assert health(process)["components"]["influx"]["starts"] == 1
    wait_for(lambda: any((tmp_path / "keep").glob("*.jsonl")), "the other sink's records")
    assert states(process)["keep"] == "running"
    assert process.stop() == 0


def test_an_unknown_database_time_zone_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        """sources:
  panda:
    type: sql_incremental
    url: sqlite:///panda.db
    query: "SELECT * FROM jobs WHERE modificationtime >= :committed_value"
    commit_column: modificationtime
    key_columns: [pandaid]
    database_timezone: Mars/Olympus_Mons
sinks:
  out: {type: jsonl, inputs: [panda], directory: out}
"""
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    assert "pipeline.yaml:8: sources.panda.database_timezone" in result.stderr
    assert "database_timezone: unknown time zone 'Mars/Olympus_Mons'" in result.stderr


def test_sigterm_stops_a_source_that_is_still_retrying_its_start(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    closed_port = free_port()  # nothing listens: every connection attempt is refused
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"""sources:
  panda:
    type: sql_incremental
    url: postgresql+psycopg://monit@127.0.0.1:{closed_port}/panda
    query: "SELECT * FROM jobs WHERE modificationtime >= :committed_value"
    commit_column: modificationtime
    key_columns: [pandaid]
    retry_initial_s: 30
sinks:
  out: {{type: jsonl, inputs: [panda], directory: {tmp_path}/out}}
bus:
  drain_timeout_s: 1
"""
    )
    process = gridwatch_process(path, tmp_path / "data").start()
    wait_for(lambda: "database unavailable" in process.log(), "the source to retry")
    assert process.proc is not None
    process.proc.send_signal(signal.SIGTERM)
    # Liveness, not speed: it must stop at all while the source sleeps between attempts.
    assert process.proc.wait(timeout=30) == 0
    assert "pipeline stopped" in process.log()
