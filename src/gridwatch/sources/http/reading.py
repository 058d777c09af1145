"""Reading a request body within a size and a time limit."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gridwatch.sources.http.errors import HttpError

READ_CHUNK = 256 * 1024


async def read_body(request: web.Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, decompressed; refuses it with 413 past ``max_bytes``, 408 when it has
    not all arrived within ``timeout_s`` (a client trickling bytes would otherwise hold the
    connection for ever), 400 when it cannot be read."""
    too_large = HttpError(413, f"the body is larger than {max_bytes} bytes; split the request")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            # aiohttp inflates gzip/deflate bodies as they stream in, so this bounds the
            # decompressed size too (a small gzip bomb never gets the chance to expand).
            async for chunk in request.content.iter_chunked(READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise HttpError(
            408, f"the body did not arrive within {timeout_s:g} s; send it faster", close=True
        ) from None
    except HttpError:
        raise
    except Exception as exc:  # a broken gzip stream or a dropped connection
        raise HttpError(400, f"cannot read the body: {exc}") from None
    return b"".join(chunks)
