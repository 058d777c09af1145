"""The HTTP server that every running pipeline serves on ``--listen``."""

from __future__ import annotations

import logging

from aiohttp import web

from gridwatch.errors import ConfigurationError

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a host and a port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigurationError(f"--listen expects HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class Server:
    """Serves an aiohttp application on ``HOST:PORT``."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
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
