"""Rows per second from PostgreSQL into the bus through the ``sql_incremental`` source.

Loads PanDA-like rows (the simulator's columns) into a private schema, then reads them all
twice: once with a bare psycopg fetch of the same pages (the baseline: database and driver
only), once through the source into a durable SQLite bus (conversion, ids, envelope, fsync).

    .venv/bin/python -m benchmarks.sql_source_rows [--rows 200000] [--batch-rows 40000]
        [--repeat 3] [--binary]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

from benchmarks._machine import describe
from gridwatch.bus import SqliteBus
from gridwatch.components import Context, SourceBatch
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder
from gridwatch.runtime.publish import by_topic
from gridwatch.sim.panda import ARCHIVED, PandaSimulator, job_columns, panda_query, table_name
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig
from gridwatch.sources.sql_incremental.query import Page, page_statement, prepare
from gridwatch.sources.sql_incremental.source import SqlIncrementalSource

URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def load(sim: PandaSimulator, schema: str, rows: int) -> None:
    """Finished jobs over the last day, a few hundred per second of modificationtime."""
    names = [c.name for c in job_columns()]
    start = time.time() - 86400
    with psycopg.connect(DSN) as conn, conn.cursor() as cur:
        target = f"{schema}.{table_name(ARCHIVED, 'postgresql')}"
        with cur.copy(f"COPY {target} ({', '.join(names)}) FROM STDIN") as copy:
            for n in range(rows):
                row = sim.job_row(4_000_000_000 + n, start + n * 0.4, "finished")
                row.update(cloud="DE", vo="atlas", endtime=row["modificationtime"])
                row.update(cpuconsumptiontime=n % 40000, hs06sec=f"{n % 9999}.125")
                row.update(maxpss=2_000_000_000 + n, nevents=n % 5000)
                copy.write_row([row[c] for c in names])
    # vacuumed as a live table is, so that autovacuum does not start during a measurement
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {target}")


def baseline(schema: str, batch_rows: int) -> int:
    """The same keyset pages with a bare psycopg cursor: tuples, no conversion."""
    sql = page_statement(
        "postgresql",
        prepare(panda_query("postgresql", schema)),
        "modificationtime",
        ["pandaid"],
        Page(after=True, upper=False),
    )
    for name in ("committed_value", "gw_after_0", "gw_after_1", "gw_limit"):
        sql = sql.replace(f":{name}", f"%({name})s")
    total = 0
    value: object = datetime(1900, 1, 1)  # noqa: DTZ001
    key: object = 0
    with psycopg.connect(DSN) as conn, conn.cursor() as cur:
        while True:
            params = {
                "committed_value": value,
                "gw_after_0": value,
                "gw_after_1": key,
                "gw_limit": batch_rows,
            }
            cur.execute(sql, params)
            rows = cur.fetchall()
            total += len(rows)
            if len(rows) < batch_rows:
                return total
            value, key = rows[-1][16], rows[-1][0]


async def through_source(
    schema: str, batch_rows: int, data_dir: Path, binary_protocol: bool = True
) -> int:
    """Read everything through the source into a SQLite bus, delivering as the runtime does:
    a batch is routed (``by_topic``) and appended in a thread while the source prepares the
    next one."""
    bus = SqliteBus(data_dir / "bus.db")
    context = Context(data_dir=data_dir, metrics=Metrics(), bus=bus, decoder=EnvelopeDecoder())
    cfg = SqlIncrementalConfig(
        url=URL,
        query=panda_query("postgresql", schema),
        batch_rows=batch_rows,
        min_interval_s=0,
        binary_protocol=binary_protocol,
    )
    source = SqlIncrementalSource("panda", cfg, context)
    await source.open(None)
    total = 0

    def append(batch: SourceBatch) -> None:
        bus.append(by_topic("panda", batch.records), ("panda", batch.position))

    delivering: asyncio.Task[None] | None = None
    async for batch in source.read_round():
        if delivering is not None:
            await delivering
        delivering = asyncio.create_task(asyncio.to_thread(append, batch))
        total += len(batch.records)
    if delivering is not None:
        await delivering
    await source.close()
    bus.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3, help="baseline/source pairs to run")
    parser.add_argument("--binary", action="store_true", help="psycopg's binary format")
    args = parser.parse_args()
    schema = f"gw_bench_{uuid.uuid4().hex[:8]}"
    sim = PandaSimulator(URL, schema=schema)
    sim.create(drop=True)
    try:
        load(sim, schema, args.rows)
        baseline(schema, args.batch_rows)  # warm the cache
        with psycopg.connect(DSN) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(describe())
        print(f"PostgreSQL {version[0] if version else '?'}, load average {_load()} at start")
        print(f"rows: {args.rows} PanDA-like rows (22 columns), batch_rows {args.batch_rows}")
        ratios, rates = [], []
        for _ in range(args.repeat):  # alternate, so both see the same machine load
            started = time.perf_counter()
            fetched = baseline(schema, args.batch_rows)
            base_s = time.perf_counter() - started
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                delivered = asyncio.run(
                    through_source(schema, args.batch_rows, Path(tmp), args.binary)
                )
                source_s = time.perf_counter() - started
            assert fetched == delivered == args.rows, (fetched, delivered)
            rates.append(delivered / source_s)
            ratios.append(base_s / source_s)
            print(
                f"baseline psycopg fetch {fetched / base_s:>9,.0f} rows/s   "
                f"sql_incremental into the bus {delivered / source_s:>9,.0f} rows/s   "
                f"ratio {base_s / source_s:.2f}"
            )
        print(f"load average {_load()} at the end")
        print(
            f"sql_incremental source into the bus: {min(rates):,.0f} to {max(rates):,.0f} "
            f"rows/s; ratio to the bare fetch {min(ratios):.2f} to {max(ratios):.2f}"
        )
    finally:
        sim.drop()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
