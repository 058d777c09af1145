"""`gridwatch run` as a real process: SIGKILL at random moments loses nothing acknowledged and
writes nothing twice."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from gridwatch.bus import SqliteBus
from tests.conftest import GridwatchProcess

pytestmark = pytest.mark.integration
TOTAL = 60_000


def pipeline(tmp_path: Path, *sinks: tuple[str, Path]) -> Path:
    sink_yaml = "".join(
        f"  {name}:\n    type: jsonl\n    inputs: [grid]\n    directory: {directory}\n"
        f"    commit_interval_s: 0.3\n    retry_initial_s: 0.1\n    retry_max_s: 0.5\n"
        for name, directory in sinks
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "sources:\n  grid:\n    type: generator\n"
        f"    rate_per_s: 20000\n    batch_records: 500\n    limit: {TOTAL}\n"
        f"sinks:\n{sink_yaml}"
    )
    return path


def seqs_in(directory: Path, strict: bool = False) -> list[int]:
    """The records' sequence numbers; a line being written is skipped unless ``strict``."""
    found: list[int] = []
    for file in directory.glob("*.jsonl"):
        for line in file.read_bytes().splitlines():
            try:
                found.append(json.loads(line)["data"]["seq"])
            except json.JSONDecodeError:
                if strict:
                    raise
    return found


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_sigkill_at_random_moments_loses_nothing(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    out = tmp_path / "out"
    path = pipeline(tmp_path, ("files", out))
    data_dir = tmp_path / "data"
    rng = random.Random(7)
    acknowledged_before_kill: list[int] = []
    for _ in range(5):
        proc = gridwatch_process(path, data_dir).start()
        time.sleep(rng.uniform(0.2, 1.5))
        assert proc.kill() != 0
        position = SqliteBus(data_dir / "bus.db").position("grid")
        acknowledged_before_kill.append(position["next"] if position else 0)
    assert acknowledged_before_kill == sorted(acknowledged_before_kill)
    assert acknowledged_before_kill[-1] > 0, "the generator never got going"

    proc = gridwatch_process(path, data_dir).start()
    assert wait_for(lambda: len(set(seqs_in(out))) >= TOTAL, 120), proc.log()
    assert proc.stop() == 0

    delivered = seqs_in(out, strict=True)  # no torn line left behind
    assert sorted(delivered) == list(range(TOTAL))  # every record once: files cut to the commit
    bus = SqliteBus(data_dir / "bus.db")
    on_bus = sum(info.end for info in bus.topics().values())
    assert on_bus == TOTAL  # positions are stored with the appends: no duplicates on the bus
    assert "Traceback" not in proc.log()


def test_graceful_stop_commits_so_a_restart_writes_nothing_twice(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    out = tmp_path / "out"
    path = pipeline(tmp_path, ("files", out))
    data_dir = tmp_path / "data"
    proc = gridwatch_process(path, data_dir).start()
    time.sleep(1.0)
    assert proc.stop() == 0
    first = seqs_in(out)
    assert first and len(first) == len(set(first))
    proc = gridwatch_process(path, data_dir).start()
    assert wait_for(lambda: len(seqs_in(out)) >= TOTAL, 120), proc.log()
    assert proc.stop() == 0
    delivered = seqs_in(out)
    assert sorted(delivered) == list(range(TOTAL))  # exactly once across a graceful restart


def test_a_broken_sink_does_not_hold_up_the_others(
    tmp_path: Path, gridwatch_process: type[GridwatchProcess]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the sink wants a directory")
    good, bad = tmp_path / "good", blocker / "out"
    path = pipeline(tmp_path, ("good", good), ("bad", bad))
    proc = gridwatch_process(path, tmp_path / "data").start()
    assert wait_for(lambda: len(set(seqs_in(good))) >= TOTAL, 120), proc.log()

    with __import__("urllib.request").request.urlopen(proc.url + "/health") as response:
        health = json.load(response)
    assert health["status"] == "degraded"
    assert health["components"]["bad"]["state"] == "retrying"
    assert health["components"]["good"]["state"] == "running"
    with __import__("urllib.request").request.urlopen(proc.url + "/metrics") as response:
        metrics = response.read().decode()
    errors = [
        line
        for line in metrics.splitlines()
        if line.startswith('gridwatch_errors_total{component="bad"')
    ]
    assert errors and float(errors[0].split()[-1]) > 0
    assert f'gridwatch_bus_lag_records{{group="sink.bad"}} {TOTAL}' in metrics

    blocker.unlink()  # the broken sink's disk comes back: it catches up on its own
    assert wait_for(lambda: len(set(seqs_in(bad))) >= TOTAL, 60), proc.log()
    assert proc.stop() == 0
    assert "failed (attempt" in proc.log()
