"""``/api/v1/query`` over HTTP names the tier it read, and refuses a tier the store lacks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from gridwatch.api.serving import add_serving_routes
from gridwatch.serving.points import Point
from gridwatch.serving.store import StagedPoints, TimeSeriesStore
from gridwatch.serving.tiers import DAY_MS, HOUR_MS, MINUTE_MS
from tests.conftest import free_port

NOW_MS = 1_800_000_000_000 - (1_800_000_000_000 % DAY_MS) + 12 * HOUR_MS


class Owner:
    status_fields: tuple[str, ...] = ()

    def __init__(self, store: TimeSeriesStore) -> None:
        self.store = store


def make_store(path: Path, retention: dict[str, int | None]) -> TimeSeriesStore:
    store = TimeSeriesStore(path, retention, lambda: NOW_MS / 1000)
    staged = StagedPoints()
    start = NOW_MS - 30 * DAY_MS
    for step in range(0, 30 * DAY_MS, 10 * MINUTE_MS):
        for host in ("a", "b"):
            store.stage(staged, Point("m", {"host": host}, {"v": 1.0}, start + step, True), "")
    store.write(staged)
    return store


async def fetch(stores: dict[str, TimeSeriesStore], urls: list[str]) -> list[tuple[int, Any]]:
    app = web.Application()
    running = SimpleNamespace(components={name: Owner(s) for name, s in stores.items()})
    add_serving_routes(app, running)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    answers: list[tuple[int, Any]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for url in urls:
                async with session.get(f"http://127.0.0.1:{port}{url}") as response:
                    body = await (response.json() if response.ok else response.text())
                    answers.append((response.status, body))
    finally:
        await runner.cleanup()
    return answers


def test_a_month_at_a_thousand_points_reads_the_half_hour_tier(tmp_path: Path) -> None:
    without = {"raw": 48 * HOUR_MS, "10m": 35 * DAY_MS, "1h": 800 * DAY_MS, "1d": None}
    stores = {
        "with": make_store(tmp_path / "with.duckdb", {**without, "30m": 35 * DAY_MS}),
        "without": make_store(tmp_path / "without.duckdb", without),
    }
    month = "/api/v1/query?measurement=m&start=-30d&max_points=1000&group_by=host"
    urls = [f"{month}&store=with", f"{month}&store=without", f"{month}&store=without&tier=30m"]
    (s1, with_30m), (s2, without_30m), (s3, refused) = asyncio.run(fetch(stores, urls))
    assert (s1, with_30m["tier"], with_30m["interval_ms"]) == (200, "30m", HOUR_MS)
    assert (s2, without_30m["tier"], without_30m["interval_ms"]) == (200, "10m", 50 * MINUTE_MS)
    for answer in (with_30m, without_30m):
        assert [s["tags"] for s in answer["series"]] == [{"host": "a"}, {"host": "b"}]
        assert all(v == 1.0 for s in answer["series"] for v in s["values"])
        assert all(len(s["times"]) <= 1000 for s in answer["series"])
        assert all(s["times"] == sorted(s["times"]) for s in answer["series"])
    assert len(with_30m["series"][0]["times"]) in (720, 721)
    assert s3 == 400 and "not kept" in refused
