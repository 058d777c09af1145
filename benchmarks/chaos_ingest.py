"""Chaos: clients that resend, SIGKILLs under load, and what every store holds afterwards.

A real ``gridwatch run`` takes XRootD transfer records over HTTP; an ``aggregate`` job bins
them (10 minutes, spread over every bin a transfer spans); the Parquet archive keeps the
records and the bins, a ``timeseries`` sink keeps them as points. Clients send requests of
records and resend any request whose answer they did not get (a cut connection, a 503), as any
HTTP client with retries does, while the process is SIGKILLed at random moments and restarted.

Printed: records acknowledged; lost (acknowledged, not in the archive); duplicated in the
archive and in the time-series store; bins that differ from ``gridwatch batch`` over the
archive. All must be 0.

    python -m benchmarks.chaos_ingest --kills 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import msgspec
import pyarrow.parquet as pq
import yaml

from benchmarks.ingest_common import machine
from gridwatch.record import Record
from gridwatch.sources.generator.source import xrootd_record

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "xrootd-transfers.yaml"
TEN_MIN_MS = 600_000
KILL_EVERY_S = 0.9
"""Mean time between two SIGKILLs (after the restart)."""
SENTINEL = 10**9
"""Number of the transfer that closes every other bin."""


def pipeline(directory: Path) -> Path:
    """http → aggregate job; archive of records and bins; time series of the records."""
    job = yaml.safe_load(EXAMPLE.read_text())["jobs"]["stats_10m"]
    job.update(inputs=["in"], commit_interval_s=0.5)
    doc = {
        "sources": {"in": {"type": "http", "anonymous_producers": ["*"]}},
        "jobs": {"stats_10m": job},
        "sinks": {
            "archive": {
                "type": "parquet_archive",
                "inputs": ["in", "stats_10m"],
                "root": str(directory / "archive"),
                "roll_interval_s": 1,
                "commit_interval_s": 0.5,
            },
            "tsdb": {
                "type": "timeseries",
                "inputs": ["in"],
                "path": str(directory / "tsdb.duckdb"),
                "commit_interval_s": 0.5,
            },
        },
        "bus": {"drain_timeout_s": 2},
    }
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Gridwatch:
    """The process under test: started, SIGKILLed and started again."""

    def __init__(self, directory: Path, pipeline_file: Path) -> None:
        self.directory = directory
        self.pipeline_file = pipeline_file
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (directory / "gridwatch.log").open("ab")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gridwatch", "--log-level", "warning", "run",
             str(self.pipeline_file), "--data-dir", str(self.directory / "data"),
             "--listen", f"127.0.0.1:{self.port}"],
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1).close()  # noqa: S310
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gridwatch did not start; see " + str(self.directory))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)

    def lag(self) -> float:
        """Records every consumer group still has to commit."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as answer:  # noqa: S310
            lines = answer.read().decode().splitlines()
        return sum(float(x.split()[-1]) for x in lines if x.startswith("gridwatch_bus_lag"))


def records(count: int, start_ms: int, span_ms: int, seed: int) -> list[Record]:
    """Transfers ending within ``span_ms`` after ``start_ms``, each a function of its number."""
    step = span_ms / count
    made = [xrootd_record(n, seed, start_ms + int(n * step)) for n in range(count)]
    for record in made:  # ids from the content, as for any sender that gives none
        record.id = ""
    return made


async def send_all(
    gridwatch: Gridwatch, bodies: list[bytes], clients: int, acked: list[int], pause_s: float = 0
) -> int:
    """Send every body until it is answered 200, resending on any other outcome; each client
    pauses ``pause_s`` between requests, so that the load lasts through the kills."""
    resends = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(bodies)):
        queue.put_nowait(index)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal resends
        while not queue.empty():
            index = queue.get_nowait()
            while True:
                try:
                    async with session.post(
                        gridwatch.url + "/ingest",
                        data=bodies[index],
                        headers={"Content-Type": "application/x-ndjson"},
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as answer:
                        await answer.read()
                        if answer.status == 200:
                            acked.append(index)
                            await asyncio.sleep(pause_s)
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                resends += 1
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return resends


async def kill_repeatedly(gridwatch: Gridwatch, kills: int, rng: random.Random) -> None:
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.2, 2 * KILL_EVERY_S - 0.2))
        gridwatch.kill()
        await asyncio.to_thread(gridwatch.start)


def archived(root: Path, dataset: str) -> list[dict[str, Any]]:
    """Every envelope of a dataset in the archive's closed files."""
    files = sorted((root / dataset).rglob("*.parquet"))
    decode = msgspec.json.decode
    return [decode(e) for f in files for e in pq.read_table(f).column("envelope").to_pylist()]


def latest_bins(envelopes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per bin id, the highest revision's data without its revision number."""
    best: dict[str, dict[str, Any]] = {}
    for envelope in envelopes:
        known = best.get(envelope["_id"])
        if known is None or envelope["data"]["revision"] > known["revision"]:
            best[envelope["_id"]] = envelope["data"]
    return {k: {f: v for f, v in d.items() if f != "revision"} for k, d in best.items()}


def batch_bins(directory: Path, span: tuple[int, int]) -> dict[str, dict[str, Any]]:
    out = directory / "batch.jsonl"
    subprocess.run(
        [sys.executable, "-m", "gridwatch", "batch", "stats_10m", "--pipeline",
         str(directory / "pipeline.yaml"), "--from", str(span[0]), "--to", str(span[1]),
         "--archive", str(directory / "archive"), "--data-dir", str(directory / "data"),
         "--output", str(out)],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        check=True,
        capture_output=True,
    )  # fmt: skip
    return latest_bins([json.loads(line) for line in out.read_text().splitlines()])


def time_series(path: Path) -> tuple[int, int]:
    """Records with points in the store, and points stored more than once for a record."""
    with duckdb.connect(str(path), read_only=True) as conn:
        ((records_with_points, repeated),) = conn.sql(
            "SELECT count(DISTINCT rid), count(*) - count(DISTINCT (series_id, field, rid)) "
            "FROM points"
        ).fetchall()
    return int(records_with_points), int(repeated)


def audit(directory: Path, acked_seqs: set[int], start_ms: int, now_ms: int) -> dict[str, int]:
    """What the stores hold against what was acknowledged, and stream bins against batch."""
    raw = archived(directory / "archive", "xrootd/raw/transfers")
    archived_seqs = [r["data"]["seq"] for r in raw if r["data"]["seq"] < SENTINEL]
    stream = latest_bins(archived(directory / "archive", "xrootd/agg/transfer_stats_10m"))
    last_closed = (now_ms - 60_000 - 900_000) // TEN_MIN_MS * TEN_MIN_MS - TEN_MIN_MS
    first = (start_ms - 900_000) // TEN_MIN_MS * TEN_MIN_MS
    expected = batch_bins(directory, (first, last_closed))
    stream = {k: v for k, v in stream.items() if first <= v["window_start"] < last_closed}
    differing = len(set(stream) ^ set(expected)) + sum(
        1 for k in set(stream) & set(expected) if stream[k] != expected[k]
    )
    with_points, twice = time_series(directory / "tsdb.duckdb")
    return {
        "acknowledged": len(acked_seqs),
        "lost": len(acked_seqs - set(archived_seqs)),
        "duplicated in the archive": len(archived_seqs) - len(set(archived_seqs)),
        "lost in time series": len(acked_seqs) + 1 - with_points,  # + the sentinel
        "duplicated in time series": twice,
        "bins compared": len(expected),
        "bins differing from batch": differing,
    }


def run(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="gw-chaos-"))
    rng = random.Random(args.seed)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 2 * 3_600_000
    made = records(args.requests * args.records_per_request, start_ms, 3_600_000, args.seed)
    per = args.records_per_request
    chunks = [made[i : i + per] for i in range(0, len(made), per)]
    encoder = msgspec.json.Encoder()
    bodies = [b"\n".join(encoder.encode(r) for r in chunk) for chunk in chunks]
    gridwatch = Gridwatch(directory, pipeline(directory))
    gridwatch.start()
    acked: list[int] = []
    started = time.monotonic()

    async def chaos() -> int:
        killer = asyncio.create_task(kill_repeatedly(gridwatch, args.kills, rng))
        pause_s = KILL_EVERY_S * args.kills * args.clients / len(bodies)
        resends = await send_all(gridwatch, bodies, args.clients, acked, pause_s)
        await killer
        # A transfer far enough ahead closes every bin of the others (the watermark passes).
        sentinel = xrootd_record(SENTINEL, args.seed, now_ms - 60_000)
        sentinel.id = ""
        await send_all(gridwatch, [encoder.encode(sentinel)], 1, [])
        return resends

    resends = asyncio.run(chaos())
    deadline = time.monotonic() + 300
    while gridwatch.lag() > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # the archive's last roll
    gridwatch.stop()
    elapsed = time.monotonic() - started

    found = audit(directory, {c.data["seq"] for i in acked for c in chunks[i]}, start_ms, now_ms)
    print(f"machine: {machine()}")
    print(
        f"{args.kills} SIGKILLs, {len(bodies)} requests of {per} records, "
        f"{args.clients} clients, {resends} resends, {elapsed:.1f} s"
    )
    for name, value in found.items():
        print(f"{name + ':':27}{value}")
    if args.keep:
        print(f"kept: {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs under load")
    parser.add_argument("--requests", type=int, default=400, help="requests to send")
    parser.add_argument("--records-per-request", type=int, default=250)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
