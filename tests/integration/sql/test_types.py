"""Seed 000's type fixes on real databases: integers, exact decimals, UTC timestamps."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from gridwatch.record import Record, decode_one, encode
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig
from tests.integration.sql.helpers import MARIADB, PG, Harness, run_async

pytestmark = pytest.mark.integration

DDL = {
    "postgresql": (
        "CREATE TABLE {t} (pandaid NUMERIC(12,0), ms NUMERIC(20,6), big NUMERIC(30,0), "
        "ratio DOUBLE PRECISION, modificationtime TIMESTAMP, stamped TIMESTAMPTZ)"
    ),
    "mariadb": (
        "CREATE TABLE {t} (pandaid DECIMAL(12,0), ms DECIMAL(20,6), big DECIMAL(30,0), "
        "ratio DOUBLE, modificationtime DATETIME, stamped DATETIME)"
    ),
}


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@run_async
async def test_numbers_stay_exact_and_times_become_utc(backend: str, tmp_path: Path) -> None:
    url = PG if backend == "postgresql" else MARIADB
    table = f"gw_types_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(DDL[backend].format(t=table)))
        conn.execute(
            sa.text(
                f"INSERT INTO {table} VALUES (896, 1456788860.123456, "
                "123456789012345678901234567890, 1.45678886e16, '2024-03-31 03:30:00', "
                "'2024-03-31 03:30:00')"
            )
        )
    try:
        cfg = SqlIncrementalConfig(
            url=url,
            query=f"SELECT * FROM {table} WHERE modificationtime >= :committed_value",
            # MariaDB here has no time zone tables: named zones need them (see the docs)
            database_timezone="Europe/Zurich" if backend == "postgresql" else "UTC",
            min_interval_s=0,
        )
        harness = Harness(tmp_path, cfg)
        await harness.start()
        assert await harness.round() == 1
        (record,) = harness.delivered()
        line = encode(_last_record(harness))
        assert record["pandaid"] == 896 and isinstance(record["pandaid"], int)
        assert record["big"] == 123456789012345678901234567890
        assert b'"ms":1456788860.123456' in line
        assert b'"ratio":14567888600000000' in line
        assert b"E+" not in line and b"e+" not in line and b"e1" not in line
        # 03:30 in Zurich on 2024-03-31 (summer time, UTC+2) is 01:30 UTC
        expected = 1711848600000 if backend == "postgresql" else 1711855800000
        assert record["modificationtime"] == expected
        if backend == "postgresql":  # a TIMESTAMPTZ is an instant: written in UTC, kept so
            assert record["stamped"] == 1711855800000
        await harness.close()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        engine.dispose()


def _last_record(harness: Harness) -> Record:
    slices = harness.bus.read("panda_raw_all", 0, 10)
    return decode_one(slices[-1].lines[-1])
