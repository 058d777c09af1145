"""Batch tasks with real child processes: retries, timeouts, overlap, misfires, dependencies,
collectors writing to the bus."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gridwatch.bus import SqliteBus
from gridwatch.record import decode_lines
from gridwatch.record.deadletter import TOPIC as DEADLETTER_TOPIC
from gridwatch.scheduler.ledger import SqliteLedger
from tests.integration.sched_support import (
    finished,
    iso,
    make_scheduler,
    output_of,
    running,
    soon,
    until,
)

pytestmark = pytest.mark.integration


def test_retries_with_backoff_until_success(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        'echo "attempt $n"; [ $n -ge 3 ]'
    )
    schedule = {
        "tasks": {
            "flaky": {
                "schedule": f"R1/{soon(0.2)}/PT1H",
                "command": ["sh", "-c", script],
                "retries": 3,
                "retry_initial_s": 0.1,
                "retry_max_s": 0.2,
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(
                lambda: any(r.state == "succeeded" for r in finished(scheduler, "flaky")), 10
            )

    asyncio.run(main())
    runs = finished(scheduler, "flaky")
    assert [(r.attempt, r.state, r.exit_code) for r in runs] == [
        (1, "failed", 1),
        (2, "failed", 1),
        (3, "succeeded", 0),
    ]
    assert len({r.slot_ms for r in runs}) == 1
    assert output_of(scheduler, runs[-1].id) == "attempt 3\n"
    assert runs[1].started_ms - runs[0].ended_ms >= 90  # type: ignore[operator]


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    schedule = {
        "tasks": {
            "slow": {
                "schedule": f"R1/{soon(0.2)}/PT1H",
                "command": ["sh", "-c", f"sleep 30 & echo $! > {pid_file}; echo started; wait"],
                "timeout_s": 0.7,
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: bool(finished(scheduler, "slow")), 10)

    asyncio.run(main())
    (run,) = finished(scheduler, "slow")
    assert run.state == "timeout"
    assert run.reason == "ran longer than 0.7 s"
    assert 0.6 < (run.duration_s or 0) < 5
    grandchild = int(pid_file.read_text())
    time.sleep(0.2)
    assert not alive(grandchild)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("allow_overlap", [False, True])
def test_overlapping_runs(tmp_path: Path, allow_overlap: bool) -> None:
    schedule = {
        "tasks": {
            "long": {
                "schedule": f"R4/{soon(0.2)}/PT0.4S",
                "command": ["sleep", "1"],
                "allow_overlap": allow_overlap,
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: len(finished(scheduler, "long")) == 4, 10)

    asyncio.run(main())
    runs = finished(scheduler, "long")
    states = [r.state for r in runs]
    if allow_overlap:
        assert states == ["succeeded"] * 4
        assert runs[1].started_ms < runs[0].ended_ms  # type: ignore[operator]
    else:
        # How many slots fall inside a run depends on how fast processes start; what must hold
        # is that runs never overlap and every slot that found one running was skipped.
        assert set(states) == {"succeeded", "skipped"} and states[0] == "succeeded"
        skipped = [r for r in runs if r.state == "skipped"]
        assert all(r.reason == "the previous run is still running" for r in skipped)
        ran = sorted((r for r in runs if r.state == "succeeded"), key=lambda r: r.slot_ms)
        for earlier, later in itertools.pairwise(ran):
            assert later.started_ms >= earlier.ended_ms  # type: ignore[operator]
    assert len({r.slot_ms for r in runs}) == 4


@pytest.mark.parametrize("policy", ["run_once", "skip"])
def test_misfire_after_downtime(tmp_path: Path, policy: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=2, minutes=5)  # slots at now - 5 min and now + 5 min
    data = tmp_path / "data"
    data.mkdir()
    # an earlier life of the scheduler ran the first slot, then nothing ran for two hours
    ledger = SqliteLedger(data)
    token = ledger.acquire()
    assert token is not None
    assert ledger.claim("hourly", round(start.timestamp() * 1000), token, "schedule")
    ledger.close()
    schedule = {
        "tasks": {
            "hourly": {
                "schedule": f"R/{iso(start)}/PT10M",
                "command": ["true"],
                "misfire": policy,
            }
        }
    }
    scheduler = make_scheduler(data, schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: bool(finished(scheduler, "hourly")), 10)
            await asyncio.sleep(0.5)

    asyncio.run(main())
    runs = finished(scheduler, "hourly")
    assert len(runs) == 1, runs
    latest_missed = now - timedelta(minutes=5)
    assert runs[0].slot_ms == round(latest_missed.timestamp() * 1000)
    assert runs[0].trigger == "misfire"
    assert runs[0].state == ("succeeded" if policy == "run_once" else "skipped")


def test_dependencies_run_after_parents_succeed(tmp_path: Path) -> None:
    fail_flag = tmp_path / "fail"
    log = tmp_path / "order.log"
    schedule = {
        "tasks": {
            "extract": {
                # Room for the whole chain to finish before the next slot on a loaded machine.
                "schedule": f"R3/{soon(0.3)}/PT1.5S",
                "command": [
                    "sh",
                    "-c",
                    f'echo "extract $GRIDWATCH_SLOT_MS" >> {log}; sleep 0.1; [ ! -e {fail_flag} ]',
                ],
            },
            "transform": {
                "parents": ["extract"],
                "command": [
                    "sh",
                    "-c",
                    f'echo "transform $GRIDWATCH_SLOT_MS" >> {log}; rm -f {fail_flag}.no',
                ],
            },
            "load": {
                "parents": ["transform"],
                "command": [
                    "sh",
                    "-c",
                    f'echo "load $GRIDWATCH_SLOT_MS" >> {log}; touch {fail_flag}',
                ],
            },
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: len(finished(scheduler, "extract")) == 3, 20)
            await asyncio.sleep(0.5)

    asyncio.run(main())
    extract = finished(scheduler, "extract")
    # load creates the flag after the first chain, so later extracts fail and stop the chain
    assert [r.state for r in extract] == ["succeeded", "failed", "failed"]
    first_slot = extract[0].slot_ms
    assert [(r.slot_ms, r.trigger, r.state) for r in finished(scheduler, "transform")] == [
        (first_slot, "parent", "succeeded")
    ]
    assert [(r.slot_ms, r.state) for r in finished(scheduler, "load")] == [
        (first_slot, "succeeded")
    ]
    lines = log.read_text().split("\n")
    assert lines[:3] == [f"extract {first_slot}", f"transform {first_slot}", f"load {first_slot}"]


COLLECTOR = """
import time

def collect(count, site):
    print("collecting from", site)
    for i in range(count):
        yield {"producer": "eventindex", "type": "status", "timestamp": 1700000000 + i,
               "data": {"site": site, "i": i}}
        time.sleep(0.01)
    yield {"producer": "Bad Name", "type": "status"}
"""


def test_collector_records_go_onto_the_bus(tmp_path: Path) -> None:
    (tmp_path / "ei_collector.py").write_text(COLLECTOR)
    schedule = {
        "tasks": {
            "eventindex": {
                "schedule": f"R1/{soon(0.2)}/PT1H",
                "collector": "ei_collector:collect",
                "collector_args": {"count": 5, "site": "CERN-PROD"},
                "working_dir": str(tmp_path),
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: bool(finished(scheduler, "eventindex")), 10)

    asyncio.run(main())
    (run,) = finished(scheduler, "eventindex")
    assert (run.state, run.records) == ("succeeded", 5)
    assert output_of(scheduler, run.id) == "collecting from CERN-PROD\n"
    bus = SqliteBus(tmp_path / "data" / "bus.db")
    try:
        assert bus.topics_from({"eventindex"}) == ["eventindex_raw_status"]
        slices = bus.read("eventindex_raw_status", 0, 100)
        assert {s.origin for s in slices} == {"eventindex"}
        records = decode_lines([line for s in slices for line in s.lines])
        assert [r.data["i"] for r in records] == [0, 1, 2, 3, 4]
        assert records[0].timestamp == 1700000000000
        dead = decode_lines([line for s in bus.read(DEADLETTER_TOPIC, 0, 10) for line in s.lines])
        assert len(dead) == 1
        assert dead[0].data["component"] == "eventindex"
        assert "'Bad Name' is not a lowercase name" in dead[0].data["reason"]
    finally:
        bus.close()
    assert scheduler.context.metrics.value("eventindex", "sent") == 5
    assert scheduler.context.metrics.value("eventindex", "dropped") == 1


def test_collector_that_raises_fails_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def collect():\n    raise RuntimeError('AGIS is down')\n")
    schedule = {
        "tasks": {
            "agis": {
                "schedule": f"R1/{soon(0.2)}/PT1H",
                "collector": "broken:collect",
                "working_dir": str(tmp_path),
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: bool(finished(scheduler, "agis")), 10)
            assert await scheduler.run_now("agis") == "started"
            await until(lambda: len(finished(scheduler, "agis")) == 2, 10)

    asyncio.run(main())
    runs = finished(scheduler, "agis")
    assert [(r.state, r.exit_code, r.trigger) for r in runs] == [
        ("failed", 1, "schedule"),
        ("failed", 1, "manual"),
    ]
    output = output_of(scheduler, runs[0].id)
    assert "RuntimeError: AGIS is down" in output
    assert sys.executable  # the collector ran with this interpreter
