"""The serving API: ``/api/v1/query``, ``/api/v1/measurements`` and ``/api/v1/status``.

They read the running components that lend a :class:`~gridwatch.capabilities.QueryStore` (the
``timeseries`` sink) or a :class:`~gridwatch.capabilities.StatusBoard` (``module_status``).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Collection
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.csv as pa_csv
from aiohttp import web

from gridwatch.api.running import RunningPipeline
from gridwatch.capabilities import QueryStore, StatusBoard
from gridwatch.serving.query import Query, QueryError, Result, parse_query, run_query
from gridwatch.serving.store import TimeSeriesStore

ARROW_STREAM = "application/vnd.apache.arrow.stream"
RESTORE_WAIT_S = 5.0
"""How long a status request waits for a job that is still loading its state."""
_json = msgspec.json.Encoder()


RUNNING_KEY = web.AppKey("gridwatch.running", object)


def add_serving_routes(app: web.Application, running: RunningPipeline) -> None:
    """Serve ``/api/v1/query``, ``/api/v1/measurements`` and ``/api/v1/status``."""
    app[RUNNING_KEY] = running
    app.router.add_get("/api/v1/query", _query)
    app.router.add_get("/api/v1/measurements", _measurements)
    app.router.add_get("/api/v1/status", _status)


def _running(request: web.Request) -> RunningPipeline:
    running: RunningPipeline = request.app[RUNNING_KEY]  # type: ignore[assignment]
    return running


def _stores(request: web.Request) -> dict[str, QueryStore]:
    return {cid: c for cid, c in _running(request).components.items() if isinstance(c, QueryStore)}


def _boards(request: web.Request) -> list[StatusBoard]:
    return [c for c in _running(request).components.values() if isinstance(c, StatusBoard)]


def _owner(request: web.Request) -> QueryStore:
    """The store named by ``store=`` (the first one when not named)."""
    stores = _stores(request)
    name = request.query.get("store")
    if not stores:
        raise web.HTTPNotFound(text="no timeseries sink in this pipeline")
    if name is None:
        return next(iter(stores.values()))
    if name not in stores:
        raise web.HTTPBadRequest(text=f"store: unknown {name!r} (known: {', '.join(stores)})")
    return stores[name]


def _store(request: web.Request) -> tuple[TimeSeriesStore, Collection[str]]:
    owner = _owner(request)
    if owner.store is None:
        raise web.HTTPServiceUnavailable(text="the store is not open yet")
    return owner.store, owner.status_fields


async def _query(request: web.Request) -> web.StreamResponse:
    store, status_fields = _store(request)
    params = {k: v for k, v in request.query.items() if k != "where"}
    try:
        query = parse_query(params, request.query.getall("where", []), store.now_ms())
    except QueryError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    fmt = request.query.get("format", "json")
    if fmt not in _CONTENT_TYPES:
        raise web.HTTPBadRequest(text=f"format: {fmt!r} is not json, csv or arrow")
    try:
        result, body = await asyncio.to_thread(_answer, store, query, status_fields, fmt)
    except QueryError as exc:  # a forced tier that this store does not keep
        raise web.HTTPBadRequest(text=str(exc)) from None
    headers = {
        "X-Gridwatch-Tier": result.plan.tier.name,
        "X-Gridwatch-Interval-Ms": str(result.plan.bucket_ms),
    }
    return web.Response(body=body, content_type=_CONTENT_TYPES[fmt], headers=headers)


_CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "arrow": ARROW_STREAM}


def _answer(
    store: TimeSeriesStore, query: Query, status_fields: Collection[str], fmt: str
) -> tuple[Result, bytes]:
    """Run the query and encode its answer (in a worker thread: both take CPU)."""
    result = run_query(store, query, status_fields)
    if fmt == "json":
        return result, _json.encode(result.to_json())
    table = result.to_arrow()
    if fmt == "csv":
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer)
        return result, buffer.getvalue()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return result, sink.getvalue().to_pybytes()


async def _measurements(request: web.Request) -> web.Response:
    store, _ = _store(request)

    def describe() -> dict[str, Any]:
        return {
            name: {
                "series": count,
                "fields": store.fields_of(name),
                "tags": sorted({k for s in store.series_of(name) for k in s.tags}),
            }
            for name, count in store.measurements().items()
        }

    return web.json_response({"measurements": await asyncio.to_thread(describe)})


async def _status(request: web.Request) -> web.Response:
    modules: list[dict[str, Any]] = []
    for board in _boards(request):
        # Just after a start, answer with the restored statuses rather than empty ones.
        await asyncio.to_thread(board.restored.wait, RESTORE_WAIT_S)
        modules.extend(board.statuses())
    counts: dict[str, int] = {}
    for module in modules:
        counts[module["status"]] = counts.get(module["status"], 0) + 1
    return web.json_response({"modules": modules, "counts": counts})
