"""What components can lend to the HTTP API, as small protocols.

Components implement them; ``gridwatch.api`` finds them among the running components and mounts
the routes, so no component imports the API (and a reloaded component is served at once).
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aiohttp import web

    from gridwatch.serving.store import TimeSeriesStore


@runtime_checkable
class IngestEndpoint(Protocol):
    """Takes records over HTTP at ``ingest_path`` (``POST``)."""

    @property
    def ingest_path(self) -> str:
        """The URL path it answers."""
        ...

    async def ingest(self, request: web.Request) -> web.StreamResponse:
        """Answer one request."""
        ...


@runtime_checkable
class QueryStore(Protocol):
    """A time-series store that ``/api/v1/query`` reads."""

    store: TimeSeriesStore | None

    @property
    def status_fields(self) -> Collection[str]:
        """Fields aggregated as their worst value."""
        ...


@runtime_checkable
class StatusBoard(Protocol):
    """Module statuses that ``/api/v1/status`` shows."""

    restored: threading.Event
    """Set once the component has loaded its checkpointed state."""

    def statuses(self) -> list[dict[str, object]]:
        """Every module's current status."""
        ...
