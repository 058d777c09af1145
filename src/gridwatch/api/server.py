"""The HTTP server that every running pipeline serves on ``--listen``."""

from __future__ import annotations

import logging

from aiohttp import web

from gridwatch.api.auth import exposure_warnings
from gridwatch.api.tls import server_context
from gridwatch.config.server import ServerSettings
from gridwatch.errors import ConfigurationError

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a host and a port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigurationError(f"--listen expects HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class Server:
    """Serves an aiohttp application on ``HOST:PORT``, over TLS when the settings say so."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner: web.AppRunner | None = None

    async def start(self, listen: str, settings: ServerSettings) -> None:
        """Listen on ``HOST:PORT``; fails clearly when the address is taken or the TLS
        certificate or key cannot be used."""
        host, port = parse_listen(listen)
        context = server_context(settings.tls) if settings.tls is not None else None
        for warning in exposure_warnings(settings, host):
            log.warning("%s", warning)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port, ssl_context=context).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigurationError(f"cannot listen on {listen}: {exc.strerror}") from None

    async def stop(self) -> None:
        """Close the listening socket and running handlers."""
        if self._runner is not None:
            await self._runner.cleanup()
