"""p50 / p95 latency of ``GET /api/v1/query`` against InfluxDB holding the same data.

Two queries, over HTTP with keep-alive, one request at a time:

* one series over one year of 10-minute bins (52,560 points), at most 1,000 points back;
* 100 series over 30 days of 10-minute bins (432,000 points), grouped by their tag, at most
  1,000 points per series.

The same points are written to the InfluxDB server of ``scripts/services.d/40-influxdb.sh``
(``GRIDWATCH_INFLUXDB_URL``, default http://127.0.0.1:18086), which answers the same questions
with ``GROUP BY time(...)`` at the bucket width gridwatch chose. Target: gridwatch p95 < 50 ms.

    .venv/bin/python -m benchmarks.serving_query [--requests 100]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
from aiohttp import web

from gridwatch.api.serving import add_serving_routes
from gridwatch.serving.points import Point
from gridwatch.serving.store import StagedPoints, TimeSeriesStore
from gridwatch.serving.tiers import DAY_MS, HOUR_MS, MINUTE_MS

INFLUX = urllib.parse.urlsplit(os.environ.get("GRIDWATCH_INFLUXDB_URL", "http://127.0.0.1:18086"))
BIN_MS = 10 * MINUTE_MS
RETENTION = {
    "raw": 48 * HOUR_MS,
    "10m": 400 * DAY_MS,
    "30m": 400 * DAY_MS,
    "1h": 800 * DAY_MS,
    "1d": None,
}


def value_at(series: int, ts: int) -> float:
    """A deterministic, wavy value."""
    return 50 + 40 * math.sin(ts / 3_600_000 / 24 * 2 * math.pi + series) + (ts // BIN_MS) % 7


def datasets(now_ms: int) -> dict[str, list[tuple[dict[str, str], list[int]]]]:
    """Measurement → [(tags, times)]: one series over a year, 100 series over 30 days."""
    end = now_ms - now_ms % BIN_MS
    year = list(range(end - 365 * DAY_MS, end, BIN_MS))
    month = list(range(end - 30 * DAY_MS, end, BIN_MS))
    return {
        "bench_one": [({"host": "h000"}, year)],
        "bench_many": [({"host": f"h{i:03d}"}, month) for i in range(100)],
    }


def load_store(store: TimeSeriesStore, data: dict[str, Any]) -> int:
    total = 0
    for measurement, series in data.items():
        for number, (tags, times) in enumerate(series):
            for first in range(0, len(times), 20_000):
                staged = StagedPoints()
                for ts in times[first : first + 20_000]:
                    point = Point(measurement, tags, {"value": value_at(number, ts)}, ts, True)
                    store.stage(staged, point, "")
                store.write(staged)
                total += len(staged)
    return total


def influx_request(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(INFLUX.hostname, INFLUX.port or 8086, timeout=300)
    conn.request(method, path, body)
    response = conn.getresponse()
    answer = response.status, response.read()
    conn.close()
    return answer


def load_influx(database: str, data: dict[str, Any]) -> str:
    influx_request("POST", "/query?" + urllib.parse.urlencode({"q": f"CREATE DATABASE {database}"}))
    lines: list[str] = []

    def flush() -> None:
        params = urllib.parse.urlencode({"db": database, "precision": "ms"})
        status, text = influx_request("POST", f"/write?{params}", "\n".join(lines).encode())
        if status >= 300:
            raise RuntimeError(f"InfluxDB write failed: {status} {text[:200]!r}")
        lines.clear()

    for measurement, series in data.items():
        for number, (tags, times) in enumerate(series):
            tag_text = "".join(f",{k}={v}" for k, v in tags.items())
            for ts in times:
                lines.append(f"{measurement}{tag_text} value={value_at(number, ts)!r} {ts}")
                if len(lines) >= 20_000:
                    flush()
    if lines:
        flush()
    _, ping = influx_request("GET", "/ping")
    return ping.decode() or "1.x"


def serve_forever(path: Path, port: int) -> None:
    """The serving routes over the store at ``path`` (run in its own process)."""

    class Owner:
        status_fields: tuple[str, ...] = ()

        def __init__(self) -> None:
            self.store = TimeSeriesStore(path, RETENTION)

    app = web.Application()
    add_serving_routes(app, SimpleNamespace(components={"bench": Owner()}))  # type: ignore[arg-type]
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve(path: Path) -> tuple[int, Callable[[], None]]:
    """Start :func:`serve_forever` in a child process, as a browser would meet it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(path), "--port", str(port)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.1)

    def stop() -> None:
        child.terminate()
        child.wait(30)

    return port, stop


def timed(conn: http.client.HTTPConnection, path: str, requests: int) -> tuple[list[float], Any]:
    latencies: list[float] = []
    body: Any = None
    conn.close()  # a fresh keep-alive connection: the server may have closed an idle one
    for index in range(requests + 5):
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {payload[:300]!r}")
        if index >= 5:  # the first few warm caches up
            latencies.append(elapsed)
        body = payload
    return latencies, json.loads(body)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95


def compare(
    ours: http.client.HTTPConnection,
    theirs: http.client.HTTPConnection,
    *,
    database: str,
    influx_version: str,
    requests: int,
    title: str,
    case: tuple[str, str, int],
) -> None:
    """Time one query on both servers and print the figures."""
    measurement, group_by, days = case
    params = {"measurement": measurement, "start": f"-{days}d", "max_points": "1000"}
    if group_by:
        params["group_by"] = group_by
    latencies, answer = timed(ours, "/api/v1/query?" + urllib.parse.urlencode(params), requests)
    series = len(answer["series"])
    size = len(json.dumps(answer))
    most = max(len(s["times"]) for s in answer["series"])
    bucket_s = answer["interval_ms"] // 1000
    group = f", {group_by}" if group_by else ""
    q = (
        f"SELECT mean(value) FROM {measurement} WHERE time >= now() - {days}d "
        f"GROUP BY time({bucket_s}s){group}"
    )
    path = "/query?" + urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"})
    influx_latencies, influx_answer = timed(theirs, path, requests)
    influx_series = len(influx_answer["results"][0].get("series", []))
    p50, p95 = percentiles(latencies)
    i50, i95 = percentiles(influx_latencies)
    print(f"\n{title}: {series} series, at most {most} points each, tier {answer['tier']}")
    print(f"  (the last answer took {answer['took_ms']:.1f} ms inside the server, {size} bytes)")
    print(f"  gridwatch /api/v1/query  p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    print(
        f"  InfluxDB {influx_version:10s}    p50 {i50:7.1f} ms   p95 {i95:7.1f} ms"
        f"   ({influx_series} series)"
    )
    print(
        f"  p95 ratio InfluxDB / gridwatch: {i95 / p95:.1f}x; target p95 < 50 ms: "
        f"{'met' if p95 < 50 else 'NOT met'}"
    )


def scale_queries() -> list[tuple[str, dict[str, str]]]:
    """Queries that show the cost of reading finer tiers than the planner would."""
    return [
        (
            "every 10-min bin of the year",
            {"measurement": "bench_one", "start": "-365d", "max_points": "100000", "tier": "10m"},
        ),
        (
            "100 series x 30 days from 10-min bins, as before the 30-min tier",
            {
                "measurement": "bench_many",
                "start": "-30d",
                "max_points": "1000",
                "group_by": "host",
                "tier": "10m",
            },
        ),
    ]


def load_average() -> str:
    """The machine's 1/5/15-minute load averages (it is shared: read figures against it)."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="timed requests per query")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever(args.serve, args.port)
        return
    now_ms = round(time.time() * 1000)
    data = datasets(now_ms)
    workdir = Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    store = TimeSeriesStore(workdir / "bench.duckdb", RETENTION)
    started = time.perf_counter()
    points = load_store(store, data)
    print(f"gridwatch store: {points} points written in {time.perf_counter() - started:.1f} s")
    store.close()
    database = f"gw_bench_{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    influx_version = load_influx(database, data)
    print(f"InfluxDB: the same points written in {time.perf_counter() - started:.1f} s")
    port, stop = serve(workdir / "bench.duckdb")
    ours = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    theirs = http.client.HTTPConnection(INFLUX.hostname, INFLUX.port or 8086, timeout=300)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, DuckDB {duckdb.__version__}"
    )
    print(f"load average: {load_average()}")
    cases = [
        ("1 series x 1 year of 10-min bins", "bench_one", "", 365),
        ("100 series x 30 days, by host", "bench_many", "host", 30),
    ]
    try:
        for title, measurement, group_by, days in cases:
            compare(
                ours,
                theirs,
                database=database,
                influx_version=influx_version,
                requests=args.requests,
                title=title,
                case=(measurement, group_by, days),
            )
        for label, params in scale_queries():
            latencies, answer = timed(ours, "/api/v1/query?" + urllib.parse.urlencode(params), 20)
            p50, p95 = percentiles(latencies)
            print(f"\nfor scale, {label} ({answer['points']} points, tier {answer['tier']}):")
            print(f"  p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        print(f"\nload average at the end: {load_average()}")
    finally:
        ours.close()
        theirs.close()
        stop()
        q = urllib.parse.urlencode({"q": f"DROP DATABASE {database}"})
        influx_request("POST", f"/query?{q}")


if __name__ == "__main__":
    main()
