"""``gridwatch sim panda`` as a user runs it for a demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.e2e


def test_sim_panda_fills_the_four_tables_and_its_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'panda.db'}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridwatch",
            "sim",
            "panda",
            "--url",
            url,
            "--rate",
            "50",
            "--dwell-min-s",
            "1",
            "--dwell-max-s",
            "2",
            "--duration-s",
            "4",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "row versions" in done.stderr
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        count = {
            name: conn.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar_one()
            for name in ("jobsdefined4", "jobsactive4", "jobsarchived4", "sim_history")
        }
        statuses = set(conn.execute(sa.text("SELECT jobstatus FROM sim_history")).scalars())
    engine.dispose()
    assert count["sim_history"] >= 100
    assert count["jobsdefined4"] + count["jobsactive4"] + count["jobsarchived4"] > 0
    assert {"defined", "activated"} <= statuses
