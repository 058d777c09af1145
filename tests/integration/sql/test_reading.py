"""The sql_incremental source against real SQLite, PostgreSQL and MariaDB databases."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from gridwatch.clock import OffsetClock
from gridwatch.errors import ConfigurationError
from gridwatch.sim.panda import ACTIVE, ARCHIVED, Change
from gridwatch.sources.sql_incremental.database import Database
from tests.integration.sql.helpers import Db, Harness, config, run_async

pytestmark = pytest.mark.integration
NOW = time.time()


def insert(sim, rows, table=ACTIVE, conn=None):  # type: ignore[no-untyped-def]
    changes = [Change(table, row, new=True) for row in rows]
    if conn is not None:
        sim.apply(conn, changes)
        return
    with sim.engine.begin() as own:
        sim.apply(own, changes)


def atlas_row(sim, pandaid, at_s, status="running"):  # type: ignore[no-untyped-def]
    row = sim.job_row(pandaid, at_s, status)
    row.update(cloud="DE", vo="atlas")
    return row


@run_async
async def test_ties_larger_than_the_batch_are_read_once(db: Db, tmp_path: Path) -> None:
    sim = db.simulator()
    same = NOW - 600
    insert(sim, [atlas_row(sim, 100 + i, same) for i in range(250)])
    insert(sim, [atlas_row(sim, 10 + i, same - 60) for i in range(5)], table=ARCHIVED)
    harness = Harness(tmp_path, config(db, sim, batch_rows=100))
    await harness.start()
    assert await harness.round() == 255
    assert await harness.round() == 0  # caught up: nothing again, no loop
    ids = [r["pandaid"] for r in harness.delivered()]
    assert sorted(ids) == [10, 11, 12, 13, 14, *range(100, 350)]
    assert ids[:5] == [10, 11, 12, 13, 14]  # in (modificationtime, pandaid) order
    assert harness.metrics.value("panda", "sql_rows_read") == 255
    # filtered as the seed's query does: OSG cloud and CMS jobs never appear
    insert(sim, [{**atlas_row(sim, 900, same), "cloud": "OSG"}])
    insert(sim, [{**atlas_row(sim, 901, same + 1), "vo": "cms"}])
    insert(sim, [atlas_row(sim, 902, same + 2)])
    assert await harness.round() == 1
    assert harness.delivered()[-1]["pandaid"] == 902
    await harness.close()
    sim.close()


@run_async
async def test_a_late_commit_inside_the_rescan_window_is_caught(db: Db, tmp_path: Path) -> None:
    sim = db.simulator()
    harness = Harness(tmp_path, config(db, sim, safety_lag_s=5, rescan_window_s=300))
    insert(sim, [atlas_row(sim, 1, NOW - 120)])
    await harness.start()
    assert await harness.round() == 1
    # a newer row commits first; the cursor moves past the late row's time
    insert(sim, [atlas_row(sim, 3, NOW - 30)])
    with sim.engine.connect() as late:
        transaction = late.begin()
        insert(sim, [atlas_row(sim, 2, NOW - 60)], conn=late)
        assert await harness.round() == 1  # only pandaid 3 is visible yet
        transaction.commit()
    assert await harness.round() == 1  # the rescan finds pandaid 2
    assert await harness.round() == 0
    delivered = harness.delivered()
    assert [r["pandaid"] for r in delivered] == [1, 3, 2]
    assert len({r["_id"] for r in delivered}) == 3
    assert harness.metrics.value("panda", "sql_rows_late") == 1
    assert harness.metrics.value("panda", "sql_rows_already_emitted") >= 3
    # a restart keeps what was emitted: the rescan drops all three again
    await harness.start()
    assert await harness.round() == 0
    await harness.close()
    sim.close()


@run_async
async def test_without_a_rescan_window_the_late_commit_is_missed(tmp_path: Path) -> None:
    """The control for the test above: it detects a real loss, so it can fail."""
    from tests.integration.sql.helpers import make_db

    db = make_db("sqlite", tmp_path)
    sim = db.simulator()
    harness = Harness(tmp_path, config(db, sim, safety_lag_s=5, rescan_window_s=0))
    insert(sim, [atlas_row(sim, 1, NOW - 120), atlas_row(sim, 3, NOW - 30)])
    await harness.start()
    with sim.engine.connect() as late:
        transaction = late.begin()
        insert(sim, [atlas_row(sim, 2, NOW - 60)], conn=late)
        assert await harness.round() == 2
        transaction.commit()
    assert await harness.round() == 0
    assert sorted(r["pandaid"] for r in harness.delivered()) == [1, 3]
    await harness.close()
    sim.close()


@run_async
async def test_the_safety_lag_follows_the_database_clock_not_a_skewed_host(
    db: Db, tmp_path: Path
) -> None:
    """This host's clock an hour ahead: rows inside the lag of the database's now wait."""
    sim = db.simulator()
    ahead = OffsetClock(3600)
    harness = Harness(tmp_path, config(db, sim, safety_lag_s=60, rescan_window_s=0), ahead)
    real = time.time()
    insert(sim, [atlas_row(sim, 1, real - 120), atlas_row(sim, 2, real - 10)])
    await harness.start()
    assert await harness.round() == 1  # by the host's clock both would be older than the lag
    assert [r["pandaid"] for r in harness.delivered()] == [1]
    skew = harness.metrics.render()
    assert "sql_clock_skew_seconds" in skew
    assert -3610 < harness.source.skew < -3590  # type: ignore[union-attr]
    await harness.close()
    sim.close()


@run_async
async def test_a_database_clock_that_cannot_be_read_falls_back_to_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.sql.helpers import make_db

    def broken(self: Database) -> float:
        raise RuntimeError("no such function: clock")

    monkeypatch.setattr(Database, "now", broken)
    db = make_db("sqlite", tmp_path)
    sim = db.simulator()
    insert(sim, [atlas_row(sim, 1, time.time() - 120)])
    harness = Harness(tmp_path, config(db, sim, safety_lag_s=60))
    await harness.start()
    assert await harness.round() == 1
    assert harness.source is not None and not harness.source.database_clock
    await harness.close()
    sim.close()


@run_async
async def test_updates_are_new_versions_and_restarts_resume(db: Db, tmp_path: Path) -> None:
    sim = db.simulator()
    insert(sim, [atlas_row(sim, i, NOW - 900 + i) for i in range(1, 41)])
    harness = Harness(tmp_path, config(db, sim, batch_rows=7))
    await harness.start()
    source = harness.source
    assert source is not None
    seen = 0
    async for batch in source.read_round():  # stop after three pages, as if killed
        harness.deliver(batch)
        seen += 1
        if seen == 3:
            break
    await harness.start()  # resumes at the stored position
    assert await harness.round() == 40 - 21
    with sim.engine.begin() as conn:
        table = sim.table(ACTIVE)
        conn.execute(
            table.update()
            .where(table.c.pandaid == 5)
            .values(
                jobstatus="finished", modificationtime=sim.job_row(0, NOW - 100)["modificationtime"]
            )
        )
    assert await harness.round() == 1
    delivered = harness.delivered()
    counts = Counter(r["pandaid"] for r in delivered)
    assert counts[5] == 2 and all(counts[i] == 1 for i in range(1, 41) if i != 5)
    assert delivered[-1]["jobstatus"] == "finished"
    assert len({r["_id"] for r in delivered}) == 41
    await harness.close()
    sim.close()


@run_async
async def test_a_bad_query_or_column_fails_at_start_naming_it(db: Db, tmp_path: Path) -> None:
    sim = db.simulator()
    harness = Harness(tmp_path, config(db, sim, key_columns=["pandaidd"]))
    with pytest.raises(ConfigurationError, match="no column pandaidd"):
        await harness.start()
    bad = db.query(sim).replace("cloud != 'OSG'", "clowd != 'OSG'", 1)
    harness = Harness(tmp_path / "b", config(db, sim, query=bad))
    with pytest.raises(ConfigurationError, match=r"(?i)clowd"):
        await harness.start()
    sim.close()
