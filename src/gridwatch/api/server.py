"""The HTTP server that every running pipeline serves on ``--listen``."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gridwatch.api.auth import exposure_warnings
from gridwatch.api.tls import server_context
from gridwatch.config.server import ServerSettings
from gridwatch.errors import ConfigurationError

log = logging.getLogger(__name__)
HEADER_TIMEOUT_S = 30.0
_TIMED_OUT_BODY = b"the request headers took too long\n"
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMED_OUT_BODY), _TIMED_OUT_BODY)
)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a host and a port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigurationError(f"--listen expects HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class HeadersInTime(asyncio.Protocol):
    """aiohttp's protocol for one connection, closed (after a 408) when the first request's
    headers have not all arrived within ``timeout_s`` of connecting.

    aiohttp waits for ever for a request that trickles in before its first blank line; later
    requests on the connection are bounded by aiohttp's keep-alive timeout, and request bodies
    by the endpoints that read them.
    """

    def __init__(self, inner: asyncio.Protocol, timeout_s: float) -> None:
        self.inner = inner
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.inner.connection_made(transport)
        self.timer = asyncio.get_running_loop().call_later(self.timeout_s, self._time_out)

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            # The headers end at the first blank line (CRLF or, leniently, bare LF).
            edge = self.tail + data[:2]
            if any(end in part for part in (data, edge) for end in (b"\n\r\n", b"\n\n")):
                self.timer.cancel()
                self.timer = None
            else:
                self.tail = (self.tail + data)[-2:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _time_out(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("closing a connection whose request headers took over %gs", self.timeout_s)
            self.transport.write(_TIMED_OUT)
            self.transport.close()


class Server:
    """Serves an aiohttp application on ``HOST:PORT``, over TLS when the settings say so."""

    def __init__(self, app: web.Application, header_timeout_s: float = HEADER_TIMEOUT_S) -> None:
        self.app = app
        self.header_timeout_s = header_timeout_s
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    async def start(self, listen: str, settings: ServerSettings) -> None:
        """Listen on ``HOST:PORT``; fails clearly when the address is taken or the TLS
        certificate or key cannot be used."""
        host, port = parse_listen(listen)
        context = server_context(settings.tls) if settings.tls is not None else None
        for warning in exposure_warnings(settings, host):
            log.warning("%s", warning)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        handlers = self._runner.server  # aiohttp's protocol factory
        assert handlers is not None
        timeout_s = self.header_timeout_s
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                lambda: HeadersInTime(handlers(), timeout_s), host, port, ssl=context
            )
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigurationError(f"cannot listen on {listen}: {exc.strerror}") from None

    async def stop(self) -> None:
        """Close the listening socket and running handlers."""
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
