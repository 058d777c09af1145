"""Services with real processes: crash and restart with backoff, hanging (failed health
checks), data liveness, flapping until marked failed, reported to a real webhook."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.integration.sched_support import finished, make_scheduler, running, until

pytestmark = pytest.mark.integration


def test_crashing_service_restarts_with_capped_backoff(tmp_path: Path) -> None:
    schedule = {
        "services": {
            "crasher": {
                "command": [sys.executable, "-c", "print('up', flush=True); raise SystemExit(3)"],
                "restart_initial_s": 0.1,
                "restart_max_s": 0.4,
                "max_failures": 50,
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: len(finished(scheduler, "crasher")) >= 6, 20)

    asyncio.run(main())
    runs = [r for r in finished(scheduler, "crasher") if r.state != "killed"][:6]
    assert all(
        (r.state, r.exit_code, r.reason) == ("failed", 3, "exited with status 3") for r in runs
    )
    assert [r.attempt for r in runs] == [1, 2, 3, 4, 5, 6]
    gaps = [b.started_ms - a.ended_ms for a, b in itertools.pairwise(runs)]  # type: ignore[operator]
    # 0.1, 0.2, 0.4 then capped at 0.4 s
    assert 80 <= gaps[0] < 400
    assert gaps[2] >= 380 and gaps[4] >= 380
    assert max(gaps) < 1200


HANGING_SERVER = """
import http.server, os, signal, sys, threading, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("serving", flush=True)
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGSTOP)).start()
server.serve_forever()
"""


def test_hanging_service_fails_http_checks_and_is_restarted(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "server.py"
    script.write_text(HANGING_SERVER)
    schedule = {
        "services": {
            "web": {
                "command": [sys.executable, str(script), str(port)],
                "health": {
                    "http": {"url": f"http://127.0.0.1:{port}/"},
                    "interval_s": 0.2,
                    "timeout_s": 0.3,
                    "grace_s": 0.3,
                    "unhealthy_after": 2,
                },
                "restart_initial_s": 0.1,
                "stop_timeout_s": 0.3,
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)
    pids: list[int] = []

    async def main() -> None:
        async with running(scheduler):
            await until(lambda: scheduler.describe()["services"][0].get("pid") is not None, 10)
            pids.append(scheduler.describe()["services"][0]["pid"])
            await until(lambda: any(r.state == "unhealthy" for r in finished(scheduler, "web")), 15)
            await until(lambda: scheduler.describe()["services"][0]["state"] == "running", 10)
            pids.append(scheduler.describe()["services"][0]["pid"])

    asyncio.run(main())
    unhealthy = next(r for r in finished(scheduler, "web") if r.state == "unhealthy")
    assert (
        unhealthy.reason is not None
        and f"GET http://127.0.0.1:{port}/ took longer" in unhealthy.reason
    )
    assert 1.0 < (unhealthy.duration_s or 0) < 5.0
    assert pids[0] != pids[1]


def test_silent_service_fails_data_liveness(tmp_path: Path) -> None:
    schedule = {
        "services": {
            "collector": {
                "command": ["sleep", "60"],
                "health": {
                    "data": {"topics": ["eventindex_raw_status"], "max_silence_s": 0.5},
                    "interval_s": 0.1,
                    "grace_s": 0,
                    "unhealthy_after": 1,
                },
                "stop_timeout_s": 1,
            }
        }
    }
    scheduler = make_scheduler(tmp_path / "data", schedule)
    line = b'{"producer":"eventindex","type":"status","timestamp":1700000000000,"_id":"1"}'

    async def main() -> None:
        async with running(scheduler):
            bus = scheduler.context.bus
            for _ in range(10):  # records keep arriving: healthy
                await asyncio.to_thread(bus.append, [("eventindex_raw_status", "x", [line])])
                await asyncio.sleep(0.1)
            assert finished(scheduler, "collector") == []
            await until(lambda: bool(finished(scheduler, "collector")), 5)

    asyncio.run(main())
    run = finished(scheduler, "collector")[0]
    assert run.state == "unhealthy"
    assert run.reason is not None and "no new records on eventindex_raw_status" in run.reason


def test_flapping_service_is_marked_failed_and_reported(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    schedule = {
        "services": {
            "flappy": {
                "command": ["sh", "-c", "echo flap; exit 7"],
                "restart_initial_s": 0.05,
                "max_failures": 3,
                "failure_window_s": 60,
            }
        },
        "reports": {},
    }

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        schedule["reports"] = {"webhook_url": f"http://127.0.0.1:{port}/hook"}
        scheduler = make_scheduler(tmp_path / "data", schedule)
        try:
            async with running(scheduler):
                await until(lambda: bool(received), 10)
                await asyncio.sleep(0.5)  # no restart after giving up
                assert scheduler.describe()["services"][0]["state"] == "failed"
                assert len(finished(scheduler, "flappy")) == 3
                assert await scheduler.run_now("flappy") == "service restarting"
                await until(lambda: len(finished(scheduler, "flappy")) == 6, 10)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    event = received[0]
    assert event["event"] == "service_failed"
    assert (event["task"], event["failures"]) == ("flappy", 3)
    assert event["reason"] == "exited with status 7"
    assert len(received) == 2  # failed again after the manual restart
