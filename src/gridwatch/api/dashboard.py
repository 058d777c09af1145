"""The web dashboard: the page at ``/``, its static files, and the JSON it reads.

``/`` serves a single page (``api/ui/``) that shows module statuses, the pipeline file's
panels (charts drawn by Plotly, whose JavaScript build ships inside the ``plotly`` package and
is served from it, so nothing is fetched from the internet) and a pipeline page. The page reads
``/api/v1/dashboard`` (its settings), ``/api/v1/status``, ``/api/v1/query`` and
``/api/v1/pipeline`` (components' counters, bus lag and dead letters).
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from gridwatch.api.running import RunningPipeline
from gridwatch.bus.base import Bus
from gridwatch.config.dashboard import RANGES
from gridwatch.record import decode_lines
from gridwatch.record.deadletter import TOPIC as DEADLETTER_TOPIC

UI_DIR = Path(__file__).parent / "ui"
RECENT_DEAD_LETTERS = 20


def plotly_js() -> Path | None:
    """The Plotly build that the ``plotly`` package ships, if it is installed."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.exists() else None


def add_dashboard_routes(app: web.Application, running: RunningPipeline) -> None:
    """Add the dashboard's page, static files and JSON routes to ``app``."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(UI_DIR / "index.html")

    async def dashboard(request: web.Request) -> web.Response:
        settings = running.pipeline.dashboard
        body = msgspec.json.encode(
            {**settings.model_dump(), "ranges": list(RANGES), "plotly": plotly_js() is not None}
        )
        return web.Response(body=body, content_type="application/json")

    async def pipeline(request: web.Request) -> web.Response:
        view = await asyncio.to_thread(pipeline_view, running)
        return web.Response(body=msgspec.json.encode(view), content_type="application/json")

    async def plotly(request: web.Request) -> web.StreamResponse:
        path = plotly_js()
        if path is None:
            raise web.HTTPNotFound(text="the plotly package is not installed")
        return web.FileResponse(path, headers={"Cache-Control": "max-age=86400"})

    app.router.add_get("/", index)
    app.router.add_get("/api/v1/dashboard", dashboard)
    app.router.add_get("/api/v1/pipeline", pipeline)
    app.router.add_get("/ui/vendor/plotly.min.js", plotly)
    app.router.add_static("/ui/", UI_DIR)


def pipeline_view(running: RunningPipeline) -> dict[str, Any]:
    """Each component's state, counters and bus lag; the dead letters; the bus's topics."""
    bus = running.bus
    counters = running.metrics.snapshot()
    lags = running.lags()  # by consumer group, with each consumer's producer/type patterns
    components = []
    for cid, spec in running.pipeline.components.items():
        lag = lags.get(f"{spec.kind}.{cid}", 0.0) if spec.kind in ("sink", "job") else None
        components.append(
            {
                "id": cid,
                "kind": spec.kind,
                "type": spec.cls.type_name,
                "inputs": spec.inputs,
                "state": running.status.get(cid, "unknown"),
                "counters": counters.get(cid, {}),
                "lag": lag,
            }
        )
    topics = bus.topics()
    return {
        "components": components,
        "dead_letters": _dead_letters(bus, topics.get(DEADLETTER_TOPIC)),
        "topics": [
            {"name": t.name, "records": t.end - t.start, "end": t.end, "bytes": t.bytes}
            for t in sorted(topics.values(), key=lambda t: t.name)
        ],
    }


def _dead_letters(bus: Bus, info: Any) -> dict[str, Any]:
    if info is None:
        return {"total": 0, "retained": 0, "recent": []}
    start = max(info.start, info.end - RECENT_DEAD_LETTERS)
    lines = [
        line
        for piece in bus.read(DEADLETTER_TOPIC, start, RECENT_DEAD_LETTERS)
        for line in piece.lines
    ]
    recent = [
        {
            "time": letter.timestamp,
            "component": letter.data.get("component"),
            "reason": letter.data.get("reason"),
            "attempts": letter.data.get("attempts"),
        }
        for letter in decode_lines(lines[-RECENT_DEAD_LETTERS:])
    ]
    recent.reverse()
    return {"total": info.end, "retained": info.end - info.start, "recent": recent}
