"""Database outages during a run, a killed process, and a simulated day of PanDA traffic."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest

from gridwatch.bus import SqliteBus
from gridwatch.record import decode_lines
from gridwatch.sim.panda import ACTIVE, Change
from tests.integration.sql.helpers import Db, Harness, TcpProxy, config, make_db, run_async

pytestmark = pytest.mark.integration
NOW = time.time()


def add(sim, first, count, at_s):  # type: ignore[no-untyped-def]
    rows = []
    for pandaid in range(first, first + count):
        row = sim.job_row(pandaid, at_s + pandaid % 7, "running")
        row.update(cloud="DE", vo="atlas")
        rows.append(Change(ACTIVE, row, new=True))
    with sim.engine.begin() as conn:
        sim.apply(conn, rows)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@run_async
async def test_database_outage_is_retried_without_loss(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(backend, tmp_path)
    sim = db.simulator()
    proxy = TcpProxy(5432 if backend == "postgresql" else 3306)
    proxy.up()
    try:
        add(sim, 1, 300, NOW - 900)
        cfg = config(db, sim, url=db.with_port(proxy.port), batch_rows=100)
        cfg = cfg.model_copy(update={"retry_initial_s": 0.1, "retry_max_s": 0.4})
        harness = Harness(tmp_path, cfg)
        await harness.start()
        assert await harness.round() == 300
        proxy.down()  # the server "stops": connections cut, new ones refused
        add(sim, 301, 200, NOW - 600)
        caplog.set_level(logging.WARNING)
        reading = asyncio.create_task(harness.round())
        await asyncio.sleep(1.5)
        assert not reading.done()  # still retrying, not crashed
        proxy.up()  # and starts again
        assert await asyncio.wait_for(reading, 30) == 200
        assert "database unavailable" in caplog.text
        assert harness.metrics.value("panda", "errors") >= 2
        ids = Counter(r["pandaid"] for r in harness.delivered())
        assert sorted(ids) == list(range(1, 501)) and set(ids.values()) == {1}
        await harness.close()
    finally:
        proxy.close()
        sim.drop()


PIPELINE = """
sources:
  panda:
    type: sql_incremental
    url: {url}
    query: |
{query}
    batch_rows: 50
    min_interval_s: 0.2
    safety_lag_s: 0
sinks:
  files:
    type: jsonl
    inputs: [panda]
    directory: {out}
"""


def bus_pandaids(data_dir: Path) -> list[int]:
    bus = SqliteBus(data_dir / "bus.db")
    try:
        out: list[int] = []
        offset = 0
        while slices := bus.read("panda_raw_all", offset, 10_000):
            for piece in slices:
                out.extend(r.data["pandaid"] for r in decode_lines(piece.lines))
                offset = piece.end
        return out
    finally:
        bus.close()


def test_killed_process_resumes_without_loss_or_repeat(
    tmp_path: Path, gridwatch_process: type
) -> None:
    db = make_db("postgresql", tmp_path)
    sim = db.simulator()
    try:
        add(sim, 1, 6000, NOW - 3600)
        query = "\n".join("      " + line for line in db.query(sim).splitlines())
        pipeline = tmp_path / "panda.yaml"
        pipeline.write_text(PIPELINE.format(url=db.url, query=query, out=tmp_path / "out"))
        data_dir = tmp_path / "data"
        first = gridwatch_process(pipeline, data_dir).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if (data_dir / "bus.db").exists() and len(bus_pandaids(data_dir)) >= 1000:
                break
        assert first.kill(signal.SIGKILL) != 0
        after_kill = len(bus_pandaids(data_dir))
        assert 0 < after_kill < 6000, "the kill should land mid-run"
        add(sim, 6001, 500, NOW - 60)
        second = gridwatch_process(pipeline, data_dir).start()
        deadline = time.monotonic() + 60
        while len(bus_pandaids(data_dir)) < 6500 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        assert second.stop() == 0
        ids = bus_pandaids(data_dir)
        assert sorted(ids) == list(range(1, 6501))  # every row once: no loss, no repeat
    finally:
        sim.drop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@run_async
async def test_a_simulated_day_is_delivered_exactly(backend: str, tmp_path: Path) -> None:
    """Every row version the simulated PanDA wrote in a day reaches the bus once."""
    db: Db = make_db(backend, tmp_path)
    sim = db.simulator(rate_per_s=0.015, dwell_min_s=600, dwell_max_s=5400, seed=7)
    day_start = NOW - 2 * 86400
    clock = {"now": day_start}
    harness = Harness(
        tmp_path, config(db, sim, batch_rows=40, safety_lag_s=60, rescan_window_s=600)
    )
    harness.clock = lambda: clock["now"]
    try:
        await harness.start()
        tick = 300
        for n in range(1, 86400 // tick + 1):
            clock["now"] = day_start + n * tick
            sim.step(clock["now"])
            if n % 97 == 0:
                await harness.start()  # a restart from the stored position
            await harness.round()
        clock["now"] += 600
        await harness.round()  # the last rows pass the safety lag
        history = {(p, int(m.replace(tzinfo=UTC).timestamp() * 1000)) for p, m in sim.history()}
        delivered = [(r["pandaid"], r["modificationtime"]) for r in harness.delivered()]
        assert len(history) > 4000
        assert len(delivered) == len(set(delivered))
        assert set(delivered) == history
        await harness.close()
    finally:
        if db.schema:
            sim.drop()
        else:
            sim.close()
