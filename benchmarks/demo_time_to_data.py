"""Seconds from `gridwatch demo` to data on its dashboard, as the dashboard's API serves it.

"Data on screen" means what the page needs: at least five modules with a status colour, and
points in the PanDA and XRootD panels. Baseline in the same run: the time until the demo's
HTTP server first answers (interpreter start, imports, pipeline load).

    .venv/bin/python -m benchmarks.demo_time_to_data [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

from tests.conftest import SRC, free_port

from benchmarks._machine import describe


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def has_data(base: str) -> bool:
    status = get(base + "/api/v1/status") or {}
    coloured = [m for m in status.get("modules", []) if m.get("colour") != "white"]
    if len(coloured) < 5:
        return False
    for measurement in ("panda_jobs", "xrootd_transfers"):
        result = get(f"{base}/api/v1/query?measurement={measurement}&aggregate=count&start=-6h")
        if not result or not result.get("points"):
            return False
    return True


def one_run() -> tuple[float, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="gridwatch-demo-bench-"))
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridwatch",
            "--log-level",
            "warning",
            "demo",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
    )
    try:
        while get(base + "/health") is None:
            time.sleep(0.05)
        serving = time.monotonic() - started
        while not has_data(base):
            if time.monotonic() - started > 120:
                raise RuntimeError("no data on the dashboard after 120 s")
            time.sleep(0.1)
        return serving, time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    results = [one_run() for _ in range(args.runs)]
    serving = [r[0] for r in results]
    data = [r[1] for r in results]
    print(
        f"server answering:  median {median(serving):5.1f} s  (runs: "
        + ", ".join(f"{x:.1f}" for x in serving)
        + ")"
    )
    print(
        f"data on dashboard: median {median(data):5.1f} s  (runs: "
        + ", ".join(f"{x:.1f}" for x in data)
        + ")"
    )


if __name__ == "__main__":
    main()
