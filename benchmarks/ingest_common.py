"""Shared parts of the ingestion benchmarks: a real `gridwatch run`, payloads and a client."""

from __future__ import annotations

import itertools
import json
import os
import platform
import re
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

ROOT = Path(__file__).resolve().parents[1]
RECORDS_PER_REQUEST = 1000
RECORD_BYTES = 500

PIPELINE = """
sources:
  in:
    type: http
    anonymous_producers: ["*"]
sinks:
  out:
    inputs: [in]
    {sink}
bus:
  dedup_window_ids: {id_window}
"""
ID_WINDOW_ON = 10_000_000
UNIQUE = b"u" * 16
"""Stands in each record's _id for 16 hex digits that make every request's records new."""
SINKS = {
    "parquet": "type: parquet_archive\n    root: {dir}/archive\n    roll_interval_s: 2",
    "jsonl": "type: jsonl\n    directory: {dir}/jsonl\n    commit_interval_s: 2",
}


def machine() -> str:
    """CPU model, cores and Python, for the printed figures."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def record(n: int) -> dict[str, Any]:
    """A PanDA-like envelope whose JSON is about RECORD_BYTES long."""
    envelope = {
        "_id": f"{UNIQUE.decode()}{n:016x}",
        "producer": "panda",
        "type": "jobs",
        "timestamp": int(time.time() * 1000),
        "data": {
            "pandaid": 4_000_000_000 + n,
            "jeditaskid": 20_000_000 + n % 50_000,
            "jobstatus": ("running", "finished", "failed")[n % 3],
            "computingsite": ("CERN-PROD", "BNL-ATLAS", "FZK-LCG2")[n % 3],
            "cloud": "CERN",
            "attemptnr": 1 + n % 3,
            "nevents": n % 5000,
            "cpuconsumptiontime": n % 36000,
            "transformation": "Reco_tf.py",
            "pad": "",
        },
    }
    size = len(json.dumps(envelope, separators=(",", ":")))
    envelope["data"]["pad"] = "x" * max(0, RECORD_BYTES - size)
    return envelope


def bodies(count: int) -> list[bytes]:
    """``count`` distinct request bodies of RECORDS_PER_REQUEST records."""
    return [
        json.dumps(
            [record(b * RECORDS_PER_REQUEST + i) for i in range(RECORDS_PER_REQUEST)],
            separators=(",", ":"),
        ).encode()
        for b in range(count)
    ]


class Pipeline:
    """`gridwatch run` with an http source and one sink, in a temporary directory."""

    def __init__(self, sink: str, id_window: int = ID_WINDOW_ON) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"gw-bench-{sink}-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "p.yaml").write_text(
            PIPELINE.format(sink=SINKS[sink].format(dir=self.dir), id_window=id_window)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Pipeline:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridwatch",
                "--log-level",
                "warning",
                "run",
                str(self.dir / "p.yaml"),
                "--data-dir",
                str(self.dir / "data"),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1).close()  # noqa: S310
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gridwatch did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def metric(self, pattern: str) -> float:
        """The first value of a /metrics line matching ``pattern`` (0 when absent)."""
        with urllib.request.urlopen(self.url + "/metrics") as response:  # noqa: S310
            text = response.read().decode()
        match = re.search(pattern + r" (\S+)", text)
        return float(match.group(1)) if match else 0.0

    def sink_written(self) -> float:
        """Records the sink has written so far."""
        return self.metric(r'gridwatch_sent_total\{component="out",kind="sink"\}')


_sent = itertools.count()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
    """One ingestion request of new records (the bus would refuse ids it already took);
    fail loudly on anything but 200."""
    fresh = body.replace(UNIQUE, b"%016x" % next(_sent))
    async with session.post(
        url + "/ingest", data=fresh, headers={"Content-Type": "application/json"}
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
        await response.read()
