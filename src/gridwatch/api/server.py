"""The HTTP server that every running pipeline serves on ``--listen``.

Components add their own routes to :attr:`Server.app` when they are built, before it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gridwatch.errors import ConfigurationError
from gridwatch.metrics import Metrics

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a host and a port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigurationError(f"--listen expects HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class Server:
    """aiohttp application with ``/health`` and ``/metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.health: Callable[[], dict[str, Any]] = lambda: {"status": "ok"}
        self.app = web.Application(client_max_size=1024**3)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None

    async def start(self, listen: str) -> None:
        """Listen on ``HOST:PORT``; fails clearly when the address is taken."""
        host, port = parse_listen(listen)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigurationError(f"cannot listen on {listen}: {exc.strerror}") from None

    async def stop(self) -> None:
        """Close the listening socket and running handlers."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(self.health())

    async def _metrics(self, request: web.Request) -> web.Response:
        text = await asyncio.to_thread(self.metrics.render)
        return web.Response(
            text=text, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"}
        )
