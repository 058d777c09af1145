"""How fast a crashed service is back (target: under 2 s at the first restart).

A small HTTP service is killed with SIGKILL; "back" is when the restarted process answers
HTTP again. Baseline in the same run: starting the same service by hand and waiting for its
first answer (the part of the figure that is the service's own start-up, not the supervisor).

    .venv/bin/python -m benchmarks.service_restart [--crashes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import describe
from gridwatch.bus import SqliteBus
from gridwatch.components import Context
from gridwatch.config.schedule import ScheduleSettings
from gridwatch.metrics import Metrics
from gridwatch.record import EnvelopeDecoder
from gridwatch.runtime.publish import Publisher
from gridwatch.scheduler.core import Scheduler

SERVER = (
    "import http.server, sys; http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), "
    "http.server.SimpleHTTPRequestHandler).serve_forever()"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5):
            return True
    except OSError:
        return False


async def wait_answer(port: int, since: float) -> float:
    while not await asyncio.to_thread(answers, port):
        await asyncio.sleep(0.005)
    return time.monotonic() - since


async def baseline(port: int, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVER, str(port), stderr=asyncio.subprocess.DEVNULL
        )
        times.append(await wait_answer(port, started))
        proc.kill()
        await proc.wait()
    return times


async def supervised(directory: Path, port: int, count: int) -> tuple[list[float], list[float]]:
    settings = ScheduleSettings.model_validate(
        {
            "services": {
                "web": {
                    "command": [sys.executable, "-c", SERVER, str(port)],
                    "healthy_reset_s": 0.5,
                    "max_failures": count + 5,
                }
            }
        }
    )
    context = Context(
        directory, Metrics(), SqliteBus(directory / "bus.db", "normal"), EnvelopeDecoder()
    )
    publisher = Publisher(context.bus, context.metrics, context.decoder)
    scheduler = Scheduler(settings, context, None, publisher.publish_ndjson)
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    to_process: list[float] = []
    to_http: list[float] = []
    try:
        await wait_answer(port, time.monotonic())
        for _ in range(count):
            await asyncio.sleep(0.8)  # past healthy_reset_s: each crash is a "first restart"
            pid = scheduler.describe()["services"][0]["pid"]
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while scheduler.describe()["services"][0]["pid"] in (None, pid):
                await asyncio.sleep(0.002)
            to_process.append(time.monotonic() - killed)
            to_http.append(await wait_answer(port, killed))
    finally:
        stop.set()
        await runner
        context.bus.close()
    return to_process, to_http


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crashes", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(describe())
    port = free_port()
    base = asyncio.run(baseline(port, args.crashes))
    with tempfile.TemporaryDirectory() as tmp:
        process, http = asyncio.run(supervised(Path(tmp), port, args.crashes))
    print(f"{args.crashes} crashes (SIGKILL) of a Python HTTP service; restart_initial_s = 0.2")
    print(f"{'':44} {'median s':>9} {'max s':>7}")
    rows = [
        ("baseline: start by hand until it answers", base, False),
        ("supervised: kill -> new process running", process, False),
        ("supervised: kill -> answering HTTP again", http, True),
    ]
    for name, values, target in rows:
        verdict = ""
        if target:
            verdict = "  (meets" if max(values) < 2.0 else "  (MISSES"
            verdict += " the < 2 s target)"
        print(f"{name:44} {statistics.median(values):9.3f} {max(values):7.3f}{verdict}")


if __name__ == "__main__":
    main()
