"""The serving API: ``/api/v1/query``, ``/api/v1/measurements`` and ``/api/v1/status``.

Time-series sinks and status jobs register themselves here when they are built; the routes are
added to the application once, by whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Collection
from typing import Any, Protocol

import msgspec
import pyarrow as pa
import pyarrow.csv as pa_csv
from aiohttp import web

from gridwatch.serving.query import Query, QueryError, Result, parse_query, run_query
from gridwatch.serving.store import TimeSeriesStore

ARROW_STREAM = "application/vnd.apache.arrow.stream"
RESTORE_WAIT_S = 5.0
"""How long a status request waits for a job that is still loading its state."""
_json = msgspec.json.Encoder()


class StoreOwner(Protocol):
    """What a time-series sink lends to the API."""

    store: TimeSeriesStore | None

    @property
    def status_fields(self) -> Collection[str]:
        """Fields aggregated as their worst value."""
        ...


class StatusBoard(Protocol):
    """What a status job lends to the API."""

    restored: asyncio.Event
    """Set once the job has loaded its checkpointed state."""

    def statuses(self) -> list[dict[str, Any]]:
        """Every module's current status."""
        ...


class Serving:
    """The stores and status boards of one running pipeline."""

    def __init__(self) -> None:
        self.stores: dict[str, StoreOwner] = {}
        self.boards: dict[str, StatusBoard] = {}

    def add_store(self, component_id: str, owner: StoreOwner) -> None:
        """Make a sink's store queryable as ``store=component_id``."""
        self.stores[component_id] = owner

    def add_board(self, component_id: str, board: StatusBoard) -> None:
        """Make a status job's modules appear in ``/api/v1/status``."""
        self.boards[component_id] = board

    def owner(self, name: str | None) -> StoreOwner:
        """The store named ``name`` (the first one when there is only one)."""
        if not self.stores:
            raise web.HTTPNotFound(text="no timeseries sink in this pipeline")
        if name is None:
            return next(iter(self.stores.values()))
        if name not in self.stores:
            known = ", ".join(self.stores)
            raise web.HTTPBadRequest(text=f"store: unknown {name!r} (known: {known})")
        return self.stores[name]


SERVING_KEY = web.AppKey("gridwatch.serving", Serving)


def serving_of(app: web.Application) -> Serving:
    """The application's :class:`Serving`, adding its routes the first time."""
    if SERVING_KEY not in app:
        serving = Serving()
        app[SERVING_KEY] = serving
        app.router.add_get("/api/v1/query", _query)
        app.router.add_get("/api/v1/measurements", _measurements)
        app.router.add_get("/api/v1/status", _status)
    return app[SERVING_KEY]


def _store(request: web.Request) -> tuple[TimeSeriesStore, Collection[str]]:
    owner = request.app[SERVING_KEY].owner(request.query.get("store"))
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
    for board in request.app[SERVING_KEY].boards.values():
        # Just after a start, answer with the restored statuses rather than empty ones.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(board.restored.wait(), RESTORE_WAIT_S)
        modules.extend(board.statuses())
    counts: dict[str, int] = {}
    for module in modules:
        counts[module["status"]] = counts.get(module["status"], 0) + 1
    return web.json_response({"modules": modules, "counts": counts})
