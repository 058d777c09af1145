"""The HTTP application of a running pipeline: every route, mounted in one place."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gridwatch.api.auth import CurrentAccess, access_middleware, uncovered_routes
from gridwatch.api.dashboard import add_dashboard_routes
from gridwatch.api.ingest import add_ingest_routes
from gridwatch.api.login import add_login_routes
from gridwatch.api.running import RunningPipeline
from gridwatch.api.serving import add_serving_routes
from gridwatch.api.tasks import add_task_routes
from gridwatch.metrics import Metrics


def build_app(running: RunningPipeline, metrics: Metrics) -> web.Application:
    """``/health``, ``/metrics``, the query, status, task and dashboard APIs, reload, sign-in
    and ingestion, each behind the role that :data:`gridwatch.api.auth.ROUTE_ROLES` names."""
    access = CurrentAccess(lambda: running.pipeline.server)
    app = web.Application(client_max_size=1024**3, middlewares=[access_middleware(access)])

    async def health(request: web.Request) -> web.Response:
        return web.json_response(running.health())

    async def prometheus(request: web.Request) -> web.Response:
        text = await asyncio.to_thread(metrics.render)
        return web.Response(
            text=text, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"}
        )

    async def reload(request: web.Request) -> web.Response:
        outcome = await running.reload()
        return web.json_response(outcome.as_json(), status=200 if outcome.applied else 422)

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    app.router.add_post("/api/v1/reload", reload)
    add_login_routes(app, access)
    add_serving_routes(app, running)
    add_task_routes(app, running)
    add_dashboard_routes(app, running)
    add_ingest_routes(app, running)  # last: it takes a POST to any other path
    missing = uncovered_routes(app)
    if missing:
        raise RuntimeError(f"routes without a role in ROUTE_ROLES: {', '.join(missing)}")
    return app
