"""``POST`` to any path that a running ingest endpoint (the ``http`` source) answers."""

from __future__ import annotations

from aiohttp import web

from gridwatch.api.running import RunningPipeline
from gridwatch.capabilities import IngestEndpoint


def add_ingest_routes(app: web.Application, running: RunningPipeline) -> None:
    """Route ``POST`` requests to the endpoint whose path they name, found at request time."""

    async def ingest(request: web.Request) -> web.StreamResponse:
        for component in running.components.values():
            if isinstance(component, IngestEndpoint) and component.ingest_path == request.path:
                return await component.ingest(request)
        raise web.HTTPNotFound(text=f"nothing takes records at {request.path}\n")

    app.router.add_post("/{path:.*}", ingest)
