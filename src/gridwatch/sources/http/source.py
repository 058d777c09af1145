"""HTTP ingestion: ``POST /ingest`` takes envelopes and answers once they are durable.

A request carries one envelope, a JSON array of envelopes, or NDJSON, optionally
gzip-compressed. The whole body is decoded and validated in one pass by the pipeline's
:class:`~gridwatch.record.EnvelopeDecoder`. Requests waiting at the same moment are appended
to the bus together (one transaction, one fsync), and each is answered only after its records
are durable:

- 200: every record accepted;
- 207: some accepted, the others listed with index and reason (and dead-lettered);
- 400: nothing accepted (every record rejected, or the body is not JSON / not UTF-8);
- 401 / 403: unknown token / a producer the token is not granted (nothing accepted);
- 408: the body did not all arrive within ``read_timeout_s`` (the connection is closed);
- 413: body or record count over the limit; 415: not a JSON content type;
- 429: a producer over its rate limit (``Retry-After``; nothing accepted);
- 500: this request broke something unexpected (logged; the endpoint goes on);
- 503: the bus could not take the batch in time, or the pipeline is stopping (retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from gridwatch.components import Context, Source, SourceBatch, SourceConfig
from gridwatch.record import NAME_PATTERN, DecodeResult, Record, RecordError, Rejection
from gridwatch.sources.http.auth import Authenticator, Caller, TokenGrant
from gridwatch.sources.http.errors import HttpError
from gridwatch.sources.http.ratelimit import ProducerRateLimits
from gridwatch.sources.http.reading import read_body

log = logging.getLogger(__name__)

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
ProducerName = Annotated[str, Field(pattern=NAME_PATTERN)]


class HttpConfig(SourceConfig):
    """Settings of the ``http`` source."""

    path: str = Field(
        "/ingest", pattern=r"^/[A-Za-z0-9/_.-]*$", description="URL path of the endpoint."
    )
    tokens: list[TokenGrant] = Field(
        default_factory=list, description="Bearer tokens and the producers each may write."
    )
    anonymous_producers: list[str] = Field(
        default_factory=list,
        description="Producers that requests without a token may write ('*': any); "
        "empty: a token is required.",
    )
    max_body_bytes: int = Field(
        32 * 1024**2, ge=1024, description="Largest request body after decompression (413)."
    )
    max_records_per_request: int = Field(
        10_000, ge=1, description="Most envelopes one request may carry (413)."
    )
    max_batch_records: int = Field(
        20_000,
        ge=1,
        description="Requests waiting together are appended as one batch of up "
        "to this many records.",
    )
    max_queued_requests: int = Field(
        64, ge=1, description="Requests decoded and waiting for the bus; more wait to enter."
    )
    ack_timeout_s: float = Field(
        30.0, gt=0, description="Answer 503 when the bus has not taken a request by then."
    )
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Answer 408 and close the connection when the whole body has not "
        "arrived this long after the request's headers.",
    )
    rate_limits: dict[ProducerName, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Records per second that each named producer may send; over it: 429 "
        "with Retry-After, nothing of the request accepted.",
    )
    max_records_per_s_per_producer: float | None = Field(
        None, gt=0, description="The limit of every producer not in rate_limits (null: none)."
    )
    rate_limit_burst_s: float = Field(
        1.0,
        gt=0,
        description="A producer may send this many seconds' worth of its rate at once.",
    )


@dataclass
class _Pending:
    """One decoded request waiting to be appended."""

    records: list[Record]
    rejected: list[Rejection]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class HttpSource(Source):
    """Receives envelopes over HTTP on the pipeline's server (``--listen``)."""

    Config = HttpConfig
    config: HttpConfig

    def __init__(self, component_id: str, config: HttpConfig, context: Context) -> None:
        super().__init__(component_id, config, context)
        self.auth = Authenticator(config.tokens, config.anonymous_producers)
        self.limits = ProducerRateLimits(
            config.rate_limits, config.max_records_per_s_per_producer, config.rate_limit_burst_s
        )
        self.queue: asyncio.Queue[_Pending] | None = None
        self.accepting = False
        self.opened = asyncio.Event()

    @property
    def ingest_path(self) -> str:
        """The URL path this source answers (``POST``)."""
        return self.config.path

    async def open(self, position: Any) -> None:
        self.queue = asyncio.Queue(self.config.max_queued_requests)
        self.accepting = True
        self.opened.set()

    async def close(self) -> None:
        self.accepting = False
        queue, self.queue = self.queue, None
        while queue is not None and not queue.empty():
            pending = queue.get_nowait()
            if not pending.done.done():
                pending.done.set_exception(HttpError(503, "the pipeline is stopping; retry"))

    async def batches(self) -> AsyncIterator[SourceBatch]:
        assert self.queue is not None, "open() first"
        queue = self.queue
        while True:
            group = [await queue.get()]
            count = len(group[0].records)
            while not queue.empty() and count < self.config.max_batch_records:
                group.append(queue.get_nowait())
                count += len(group[-1].records)
            acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            acked.add_done_callback(lambda fut, g=group: _settle(fut, g))  # type: ignore[misc]
            records = [r for p in group for r in p.records]
            rejected = [r for p in group for r in p.rejected]
            yield SourceBatch(records, rejected, None, acked)

    async def ingest(self, request: web.Request) -> web.Response:
        """Answer a ``POST`` to :attr:`ingest_path`: authenticate, read, decode, queue, wait
        until durable, answer."""
        self.context.metrics.inc(self.id, "requests")
        try:
            return await self._handle(request)
        except HttpError as exc:
            if exc.status >= 500:
                self.context.metrics.inc(self.id, "errors")
            else:
                self.context.metrics.inc(self.id, "refused_requests")
            return await exc.answer(request)
        except Exception as exc:
            # One request must never take the endpoint down, whatever it held.
            self.context.metrics.inc(self.id, "errors")
            log.exception("%s: a request from %s failed", self.id, request.remote)
            message = f"the request could not be handled ({type(exc).__name__}); see the log"
            return await HttpError(500, message).answer(request)

    async def _handle(self, request: web.Request) -> web.Response:
        caller = self.auth.caller(request.headers.get("Authorization"))
        if caller is None:
            raise HttpError(
                401, "missing or unknown bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        decode = self._decoder_for(request)
        body = await read_body(request, self.config.max_body_bytes, self.config.read_timeout_s)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HttpError(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
        try:
            result = decode(body)
        except RecordError as exc:
            raise HttpError(400, str(exc)) from None
        except RecursionError:  # the decoder turns these into rejections; never a 500
            raise HttpError(400, "the body nests too deeply") from None
        total = len(result.records) + len(result.rejected)
        if total > self.config.max_records_per_request:
            raise HttpError(
                413,
                f"{total} records in one request; at most "
                f"{self.config.max_records_per_request} are accepted, split the request",
            )
        _check_grants(caller, result)
        if not total:
            raise HttpError(400, "the body holds no envelopes")
        self._take_rate(result)
        await self._wait_durable(result)
        return _answer(result)

    def _decoder_for(self, request: web.Request) -> Any:
        content_type = request.content_type.lower()
        charset = request.charset
        if charset is not None and charset.lower().replace("-", "") != "utf8":
            raise HttpError(415, f"charset {charset} is not supported; send UTF-8")
        if content_type in JSON_TYPES:
            return self.context.decoder.decode_json
        if content_type in NDJSON_TYPES:
            return self.context.decoder.decode_ndjson
        raise HttpError(
            415,
            f"content type {content_type!r} is not accepted; send application/json "
            "(one envelope or an array) or application/x-ndjson",
        )

    def _take_rate(self, result: DecodeResult) -> None:
        if not self.limits.enabled:
            return
        counts = Counter(record.producer for record in result.records)
        throttled = self.limits.take(counts)
        if throttled is None:
            return
        self.context.metrics.inc(self.id, "rate_limited", len(result.records))
        limits = ", ".join(f"{p} ({self.limits.rate_of(p):g}/s)" for p in throttled.producers)
        raise HttpError(
            429,
            f"over the rate limit of {limits}; nothing was accepted, retry after "
            f"{throttled.retry_after_header} s",
            headers={"Retry-After": throttled.retry_after_header},
            retry_after_s=round(throttled.retry_after_s, 3),
        )

    async def _wait_durable(self, result: DecodeResult) -> None:
        if not self.opened.is_set():
            # The server listens a moment before the sources open: wait for it, not 503.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.opened.wait(), self.config.ack_timeout_s)
        queue = self.queue
        if queue is None or not self.accepting:
            raise HttpError(503, "the endpoint is not ready or the pipeline is stopping; retry")
        pending = _Pending(result.records, result.rejected)
        try:
            async with asyncio.timeout(self.config.ack_timeout_s):
                await queue.put(pending)
                await asyncio.shield(pending.done)
        except TimeoutError:
            log.warning(
                "%s: bus did not take a request within %ss", self.id, self.config.ack_timeout_s
            )
            raise HttpError(503, "the bus did not take the records in time; retry") from None
        except HttpError:
            raise
        except Exception as exc:
            raise HttpError(503, f"the records could not be stored: {exc}; retry") from None


def _check_grants(caller: Caller, result: DecodeResult) -> None:
    forbidden = caller.forbidden({r.producer for r in result.records})
    if forbidden:
        indexes = _indexes_of(result, set(forbidden))
        raise HttpError(
            403,
            f"{caller.name} may not write producer(s) {', '.join(forbidden)}; nothing was accepted",
            forbidden_indexes=indexes[:100],
        )


def _indexes_of(result: DecodeResult, producers: set[str]) -> list[int]:
    """Input positions of the accepted records with these producers."""
    rejected = {r.index for r in result.rejected}
    indexes: list[int] = []
    position = 0
    for record in result.records:
        while position in rejected:
            position += 1
        if record.producer in producers:
            indexes.append(position)
        position += 1
    return indexes


def _answer(result: DecodeResult) -> web.Response:
    rejected = [{"index": r.index, "reason": r.reason} for r in result.rejected]
    body = {"accepted": len(result.records), "rejected": rejected}
    if not rejected:
        status = 200
    elif result.records:
        status = 207
    else:
        status = 400
    return web.json_response(body, status=status)


def _settle(acked: asyncio.Future[None], group: list[_Pending]) -> None:
    """Pass the outcome of a combined append on to each request in it."""
    error = None if acked.cancelled() else acked.exception()
    for pending in group:
        if pending.done.done():
            continue
        if acked.cancelled():
            pending.done.set_exception(HttpError(503, "the pipeline is stopping; retry"))
        elif error is not None:
            pending.done.set_exception(error)
        else:
            pending.done.set_result(None)
