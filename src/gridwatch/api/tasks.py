"""``/api/v1/tasks``: the schedule's tasks and services, their runs and output, manual runs."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gridwatch.api.running import RunningPipeline
from gridwatch.scheduler.core import NotLeader


def add_task_routes(app: web.Application, running: RunningPipeline) -> None:
    """Serve the scheduler's state on ``app``."""
    scheduler = running.scheduler

    async def tasks(request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(scheduler.describe))

    async def runs(request: web.Request) -> web.Response:
        task_id = request.match_info["task"]
        limit = _int(request.query.get("limit", "50"))
        found = await asyncio.to_thread(scheduler.store.runs, task_id, limit)
        return web.json_response({"task": task_id, "runs": [r.as_json() for r in found]})

    async def run(request: web.Request) -> web.Response:
        found = await asyncio.to_thread(scheduler.store.run, _int(request.match_info["run"]))
        if found is None:
            raise web.HTTPNotFound(text="no such run\n")
        return web.json_response(found.as_json())

    async def start(request: web.Request) -> web.Response:
        task_id = request.match_info["task"]
        try:
            result = await scheduler.run_now(task_id)
        except KeyError:
            raise web.HTTPNotFound(text=f"no task or service {task_id!r}\n") from None
        except NotLeader as exc:
            return web.json_response({"task": task_id, "error": str(exc)}, status=409)
        status = 202 if result != "refused" else 409
        return web.json_response({"task": task_id, "result": result}, status=status)

    app.router.add_get("/api/v1/tasks", tasks)
    app.router.add_get("/api/v1/tasks/{task}/runs", runs)
    app.router.add_post("/api/v1/tasks/{task}/run", start)
    app.router.add_get("/api/v1/runs/{run}", run)


def _int(text: str) -> int:
    try:
        return max(1, min(int(text), 10000))
    except ValueError:
        raise web.HTTPBadRequest(text=f"expected a number, got {text!r}\n") from None
