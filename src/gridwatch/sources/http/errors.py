"""The error that refuses one ingestion request as a whole."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class HttpError(Exception):
    """A request refused as a whole: its status, the message for the sender, extra body
    fields, extra headers, and whether the connection must be closed after the answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.close = close
        self.extra = extra

    async def answer(self, request: web.Request) -> web.Response:
        """Answer ``request`` with ``{"error": message, **extra}`` and the headers; when the
        connection must be closed, close it right after the answer (aiohttp would otherwise
        go on reading what is left of the body for up to 10 s)."""
        body = {"error": str(self), **self.extra}
        response = web.json_response(body, status=self.status, headers=self.headers)
        if self.close:
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            if request.transport is not None:
                request.transport.close()
        return response
