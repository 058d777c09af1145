"""Leader election on the real PostgreSQL: fencing tokens, and two schedulers whose leader is
frozen, woken up late and killed mid-run, without any slot running twice."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gridwatch.config.schedule import HaSettings
from gridwatch.scheduler.pgledger import PostgresLedger
from tests.conftest import GridwatchProcess
from tests.integration.sched_support import PG_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> Iterator[str]:
    """A table prefix of our own on the shared server, dropped afterwards."""
    name = f"gw_sched_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for table in ("lease", "slots", "anchors"):
            conn.execute(f"DROP TABLE IF EXISTS {name}_{table}")  # type: ignore[arg-type]


def test_fencing_refuses_an_old_leader(prefix: str) -> None:
    settings = HaSettings(postgres_url=PG_URL, table_prefix=prefix, lease_s=0.5)
    first, second = PostgresLedger(settings), PostgresLedger(settings)
    try:
        token = first.acquire()
        assert token == 1
        assert second.acquire() is None
        assert first.acquire() == 1  # renewing keeps the token
        assert first.claim("t", 1000, 1, "schedule")
        assert not first.claim("t", 1000, 1, "schedule")  # a slot is claimed once
        assert not second.claim("t", 2000, 1, "schedule")  # not the holder
        time.sleep(0.6)  # the first leader stalls past its lease
        assert second.acquire() == 2
        assert second.leader() == second.holder
        assert not first.claim("t", 2000, 1, "schedule")  # woke up late: fenced off
        assert first.acquire() is None
        assert not second.claim("t", 1000, 2, "schedule")
        assert second.claim("t", 2000, 2, "schedule")
        assert second.abandon(2) == [("t", 1000)]  # the first leader's run is lost, not redone
        second.finish("t", 2000, "succeeded")
        assert second.last_success("t") == 2000
        assert second.last_slot("t", ("schedule",)) == 2000
        assert first.anchor("t", 5) == 5 and second.anchor("t", 9) == 5
    finally:
        first.close()
        second.close()


def _tasks(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/v1/tasks", timeout=5) as response:  # noqa: S310
        result: dict[str, Any] = json.load(response)
        return result


def _leader(processes: list[GridwatchProcess], timeout_s: float = 20) -> GridwatchProcess:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in processes:
            try:
                if _tasks(proc.url)["leader"]:
                    return proc
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError("no leader elected")


def test_failover_never_runs_a_slot_twice(
    tmp_path: Path, prefix: str, gridwatch_process: type[GridwatchProcess]
) -> None:
    ledger_out = tmp_path / "runs.txt"
    pipeline = tmp_path / "ha.yaml"
    pipeline.write_text(f"""\
schedule:
  ha:
    postgres_url: "{PG_URL}"
    table_prefix: {prefix}
    lease_s: 1.5
    renew_every_s: 0.3
  tasks:
    every-second:
      schedule: "R//PT0.5S"
      allow_overlap: true
      misfire: run_once
      command: [sh, -c, 'echo "$GRIDWATCH_SLOT_MS $GRIDWATCH_TRIGGER" >> {ledger_out}; sleep 1.2']
""")
    procs = [gridwatch_process(pipeline, tmp_path / f"host{i}").start() for i in range(2)]
    first = _leader(procs)
    other = procs[1] if first is procs[0] else procs[0]
    time.sleep(2.0)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)  # frozen mid-run, like a VM paused for minutes
    frozen_at = time.monotonic()
    assert _leader([other], 10) is other
    takeover_s = time.monotonic() - frozen_at
    time.sleep(2.0)
    first.proc.send_signal(signal.SIGCONT)  # the old leader wakes up late
    time.sleep(2.0)
    assert not _tasks(first.url)["leader"]
    assert other.proc is not None
    other.kill(signal.SIGKILL)  # the new leader dies mid-run
    assert _leader([first], 10) is first
    time.sleep(2.0)
    first.stop()

    slots = [line.split()[0] for line in ledger_out.read_text().splitlines()]
    duplicates = [slot for slot, count in Counter(slots).items() if count > 1]
    assert duplicates == [], f"slots run twice: {duplicates}"
    assert len(slots) >= 10
    assert takeover_s < 1.5 + 0.3 + 2.0
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT holder, token, state FROM {prefix}_slots ORDER BY slot_ms"  # type: ignore[arg-type]
        ).fetchall()
    assert len(rows) == len(slots)
    assert len({holder for holder, _, _ in rows}) == 2
    assert {token for _, token, _ in rows} == {1, 2, 3}  # first, other, first again
    assert [token for _, token, _ in rows] == sorted(token for _, token, _ in rows)
    assert "lost" in {state for _, _, state in rows}  # the killed leader's runs, not redone
    assert "refused" in first.log() or "no longer leading" in first.log()


def test_file_lock_elects_one_scheduler_per_machine(tmp_path: Path) -> None:
    from gridwatch.scheduler.ledger import SqliteLedger

    first, second = SqliteLedger(tmp_path), SqliteLedger(tmp_path)
    try:
        assert first.acquire() == 1
        assert second.acquire() is None
        assert first.claim("t", 1000, 1, "schedule")
        first.release()  # as when its process dies: the kernel drops the lock
        assert second.acquire() == 2
        assert not first.claim("t", 2000, 1, "schedule")
        assert not second.claim("t", 1000, 2, "schedule")
        assert second.claim("t", 2000, 2, "schedule")
        assert second.abandon(2) == [("t", 1000)]
    finally:
        first.close()
        second.close()
