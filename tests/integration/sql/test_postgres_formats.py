"""PostgreSQL's text and binary formats give the same records, byte for byte."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig
from tests.integration.sql.helpers import PG, Harness, run_async

pytestmark = pytest.mark.integration

COLUMNS = (
    "pandaid NUMERIC(12,0), hs06sec NUMERIC(18,3), free NUMERIC, ratio DOUBLE PRECISION, "
    "nevents INTEGER, maxpss BIGINT, site TEXT, modificationtime TIMESTAMP, "
    "stamped TIMESTAMPTZ, day DATE, took INTERVAL, blob BYTEA, done BOOLEAN"
)
VALUES = [
    "(1, 16.125, 896, 1.45678886e16, 5, 4000000000, 'CERN-PROD', '2024-03-31 03:30:00', "
    "'2024-03-31 03:30:00+02', '2024-03-31', '1 hour', '\\x00ff', true)",
    "(2, 0.500, 1.50, 1e-7, NULL, NULL, 'ünïcode \" \\', '2024-03-31 03:30:00.123456', "
    "NULL, NULL, NULL, NULL, NULL)",
    "(3, NULL, 'NaN', 0.25, -1, -1, '', '2024-03-31 04:00:00', '2024-01-01 00:00:00+00', "
    "'2024-01-01', '-2 days 3 seconds', '\\x', false)",
]


@run_async
async def test_text_and_binary_formats_deliver_the_same_lines(tmp_path: Path) -> None:
    table = f"gw_formats_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} ({COLUMNS})"))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES {', '.join(VALUES)}"))
    try:
        delivered = {}
        for binary in (False, True):
            cfg = SqlIncrementalConfig(
                url=PG,
                query=f"SELECT * FROM {table} WHERE modificationtime >= :committed_value",
                database_timezone="Europe/Zurich",
                min_interval_s=0,
                batch_rows=2,  # two pages: the second one is fetched while the first converts
                binary_protocol=binary,
            )
            harness = Harness(tmp_path / str(binary), cfg)
            await harness.start()
            assert await harness.round() == 3
            delivered[binary] = [
                line for s in harness.bus.read("panda_raw_all", 0, 10) for line in s.lines
            ]
            await harness.close()
        assert delivered[False] == delivered[True]
        text = b"\n".join(delivered[False])
        assert b'"hs06sec":16.125' in text and b'"free":896,' in text and b'"free":1.50' in text
        assert b'"ratio":14567888600000000' in text and b'"ratio":0.0000001' in text
        assert b'"modificationtime":1711848600123' in text  # microseconds cut to ms
        assert b'"free":"NaN"' in text
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        engine.dispose()
