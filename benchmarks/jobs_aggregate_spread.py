"""Records/s of the 10-minute transfer statistics with spreading, gridwatch vs PySpark.

Both engines read the same envelopes and compute the example pipeline's ``stats_10m`` job:
seed 001's derived fields, spreading of bytes over every 10-minute bin a transfer overlaps,
group by six keys, count, active time and two quantiles. gridwatch is measured twice:

- the stream job, end to end: the envelopes wait on the bus (SQLite, as ``gridwatch run``
  keeps it, in the order transfers end), and the ``aggregate`` job runs its real loop until
  it has committed them all: bus reads, DuckDB parsing, spreading, the state, output records
  appended to the bus with offsets and state in one transaction (checkpoints), revisions;
- `gridwatch batch`'s code path over the NDJSON file (records -> bins, then output records).

PySpark runs in local mode on one core (``local[1]``) over the NDJSON file, timed after the
JVM is up, with its own equivalent SQL (proportional float shares and ``percentile_approx``
instead of exact integer shares and a sketch). ``--rounds`` repeats the gridwatch runs.
Usage: python -m benchmarks.jobs_aggregate_spread [--records N] [--rounds 3] [--no-spark]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

from benchmarks._machine import describe
from gridwatch.batch import BatchResult, aggregate_batch, aggregate_bins
from gridwatch.bus import SqliteBus
from gridwatch.components import Context
from gridwatch.config import load_pipeline
from gridwatch.jobs.aggregate.job import AggregateCore, AggregateJob
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder
from gridwatch.runtime.consume import JobStrategy, Stopping, consume
from gridwatch.runtime.reader import BusReader

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "xrootd-transfers.yaml"
DOMAINS = ["cern.ch", "bnl.gov", "kit.edu", "in2p3.fr", "rl.ac.uk", "infn.it", "pic.es", "desy.de"]
PROTOCOLS = ["root", "xroot", "https", "gsiftp"]
T0 = 1_714_521_600_000


def make_records(path: Path, count: int) -> None:
    """``count`` transfers over one day, durations up to 30 minutes."""
    rng = np.random.default_rng(1)
    start = T0 + rng.integers(0, 86_400_000, count)
    end = start + rng.integers(0, 1_800_000, count)
    size = rng.integers(1, 4_000_000_000, count)
    writing = rng.random(count) < 0.3
    client = rng.integers(0, len(DOMAINS), count)
    server = rng.integers(0, len(DOMAINS), count)
    proto = rng.integers(0, len(PROTOCOLS), count)
    encoder = msgspec.json.Encoder()
    with path.open("wb") as out:
        for i in range(count):
            data = {
                "client_domain": DOMAINS[client[i]],
                "server_domain": DOMAINS[server[i]],
                "user_protocol": PROTOCOLS[proto[i]],
                "read_bytes": 0 if writing[i] else int(size[i]),
                "written_bytes": int(size[i]) if writing[i] else 0,
                "file_size": int(size[i]),
                "start_time": int(start[i]),
                "end_time": int(end[i]),
            }
            envelope = {
                "producer": "xrootd",
                "type": "transfers",
                "timestamp": int(end[i]),
                "_id": f"{i:032x}",
                "data": data,
            }
            out.write(encoder.encode(envelope) + b"\n")


def stream_bus(path: Path, directory: Path) -> SqliteBus:
    """A bus holding the envelopes on the input topic, in the order the transfers ended."""
    lines = path.read_bytes().splitlines()
    stamps = np.array([msgspec.json.decode(line)["timestamp"] for line in lines])
    bus = SqliteBus(directory / "bus.db")
    ordered = [lines[i] for i in np.argsort(stamps, kind="stable")]
    for start in range(0, len(ordered), 5000):
        bus.append([("xrootd_raw_transfers", "transfers", ordered[start : start + 5000])])
    return bus


def run_stream(path: Path, directory: Path) -> tuple[float, int]:
    """(seconds, output records) of the stream job consuming every envelope from the bus."""
    bus = stream_bus(path, directory)
    config = load_pipeline(EXAMPLE).components["stats_10m"].config
    context = Context(directory, Metrics(), bus, EnvelopeDecoder())
    job = AggregateJob("stats_10m", config, context)
    group, topics = "job.stats_10m", ["xrootd_raw_transfers"]

    async def until_consumed() -> None:
        # The runtime's own loop: bus reads, process, checkpoints with outputs and offsets.
        stopping = Stopping(asyncio.Event(), drain_s=60.0)
        reader = BusReader(bus, group, config.inputs, config.max_batch_records)
        strategy = JobStrategy(job, bus, context.metrics)
        task = asyncio.create_task(consume(strategy, reader, stopping, config.poll_interval_s))
        while await asyncio.to_thread(bus.lag, group, topics):
            await asyncio.sleep(0.05)
        stopping.stop.set()
        await task

    started = time.perf_counter()
    asyncio.run(until_consumed())
    seconds = time.perf_counter() - started
    outputs = bus.topics()["xrootd_agg_transfer_stats_10m"].end
    bus.close()
    return seconds, outputs


def run_gridwatch(path: Path) -> tuple[float, float, int]:
    """(seconds to aggregate into bins, seconds end to end with output records, bins)."""
    config = load_pipeline(EXAMPLE).components["stats_10m"].config
    span = (T0 - 86_400_000, T0 + 2 * 86_400_000)
    started = time.perf_counter()
    bins = aggregate_bins(AggregateCore(config), [str(path)], *span, BatchResult())
    aggregated = time.perf_counter() - started
    started = time.perf_counter()
    result = aggregate_batch(config, [str(path)], *span)
    assert len(result.records) == len(bins)
    return aggregated, time.perf_counter() - started, len(bins)


SPARK_SQL = """
WITH d AS (
  SELECT *, COALESCE(data.read_bytes, 0) AS rd, COALESCE(data.written_bytes, 0) AS wr
  FROM transfers
), k AS (
  SELECT
    CASE WHEN wr > 0 THEN data.client_domain ELSE data.server_domain END AS src_domain,
    CASE WHEN wr > 0 THEN data.server_domain ELSE data.client_domain END AS dst_domain,
    data.user_protocol AS user_protocol,
    CASE WHEN data.client_domain = data.server_domain THEN 0 ELSE 1 END AS is_remote_access,
    CASE WHEN rd + wr = data.file_size THEN 1 ELSE 0 END AS is_transfer,
    CASE WHEN wr > 0 THEN 'w' WHEN rd > 0 THEN 'r' ELSE 'u' END AS activity,
    rd + wr AS bytes, data.start_time AS s, data.end_time AS e
  FROM d
), b AS (
  SELECT *, explode(sequence(floor(s / 600000), floor(greatest(e - 1, s) / 600000))) AS bin
  FROM k
), o AS (
  SELECT *, greatest(least(e, (bin + 1) * 600000) - greatest(s, bin * 600000), 0) AS overlap,
         floor(greatest(e - 1, s) / 600000) = bin AS is_last
  FROM b
)
SELECT bin, src_domain, dst_domain, user_protocol, is_remote_access, is_transfer, activity,
       count(*) AS count, sum(overlap) AS active_time_ms, sum(CAST(is_last AS INT)) AS ended,
       sum(CASE WHEN e = s THEN bytes ELSE bytes * overlap / (e - s) END) AS bytes,
       percentile_approx(CASE WHEN is_last THEN bytes END, 0.5) AS p50,
       percentile_approx(CASE WHEN is_last THEN bytes END, 0.95) AS p95
FROM o
GROUP BY bin, src_domain, dst_domain, user_protocol, is_remote_access, is_transfer, activity
"""


def run_spark(path: Path) -> tuple[float, int]:
    """(seconds, bins) for the same aggregation in PySpark local[1], JVM start excluded."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("gridwatch-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.memory", "3g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    schema = (
        "producer STRING, type STRING, timestamp LONG, _id STRING, data STRUCT<"
        "client_domain: STRING, server_domain: STRING, user_protocol: STRING, read_bytes: LONG, "
        "written_bytes: LONG, file_size: LONG, start_time: LONG, end_time: LONG>"
    )
    try:
        spark.range(1).collect()  # warm the JVM up
        started = time.perf_counter()
        spark.read.schema(schema).json(str(path)).createOrReplaceTempView("transfers")
        rows = spark.sql(SPARK_SQL).collect()
        return time.perf_counter() - started, len(rows)
    finally:
        spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3, help="repeat the gridwatch runs")
    parser.add_argument("--no-spark", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    print(describe())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "transfers.jsonl"
        make_records(path, args.records)
        size_mb = path.stat().st_size / 1e6
        print(f"input: {args.records} transfer envelopes, {size_mb:.0f} MB NDJSON")
        stream_rates, batch_rates = [], []
        for round_ in range(args.rounds):
            directory = Path(tmp) / f"stream{round_}"
            seconds, outputs = run_stream(path, directory)
            stream_rates.append(args.records / seconds)
            print(
                f"gridwatch stream job, bus -> {outputs} output records on the bus: "
                f"{seconds:.2f} s, {stream_rates[-1]:,.0f} records/s"
            )
            aggregated, with_records, bins = run_gridwatch(path)
            batch_rates.append(args.records / with_records)
            print(
                f"gridwatch batch path, records -> {bins} bins: {aggregated:.2f} s, "
                f"{args.records / aggregated:,.0f} records/s; with the output records: "
                f"{with_records:.2f} s, {batch_rates[-1]:,.0f} records/s"
            )
        print(f"load average after gridwatch: {os.getloadavg()[0]:.2f}")
        print(f"stream end to end: {_span(stream_rates)}; batch with records: {_span(batch_rates)}")
        if args.no_spark:
            return
        try:
            spark_seconds, spark_bins = run_spark(path)
        except Exception as exc:  # report why, the gridwatch figure stands on its own
            print(f"PySpark could not run: {type(exc).__name__}: {exc}")
            return
        spark_rate = args.records / spark_seconds
        print(
            f"PySpark local[1]: {spark_seconds:.2f} s, {spark_rate:,.0f} records/s, "
            f"{spark_bins} bins (load average {os.getloadavg()[0]:.2f})"
        )
        print(
            f"ratio gridwatch / PySpark: stream end to end {max(stream_rates) / spark_rate:.1f}x "
            f"(best), {min(stream_rates) / spark_rate:.1f}x (worst); batch with output records "
            f"{max(batch_rates) / spark_rate:.1f}x (best)"
        )


def _span(rates: list[float]) -> str:
    return f"{min(rates):,.0f} .. {max(rates):,.0f} records/s over {len(rates)} runs"


if __name__ == "__main__":
    main()
