"""The ``sql_incremental`` source: reads changed rows from a database, exactly once.

Each round first rescans the window behind the cursor (emitting only row versions not emitted
yet: transactions that committed late with an older commit value), then reads forward from
the cursor in ``(commit value, key)`` order, page by page, up to now minus the safety lag.
Every page becomes one batch whose position is the cursor after it; the bus stores both in one
transaction, so a crash at any moment neither loses nor repeats a row version.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from gridwatch.components import Source, SourceBatch
from gridwatch.errors import ConfigurationError
from gridwatch.metrics import Metrics
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig, start_offset_s
from gridwatch.sources.sql_incremental.cursor import Cursor
from gridwatch.sources.sql_incremental.database import Database, Fetched
from gridwatch.sources.sql_incremental.rows import Converted, RowConverter
from gridwatch.sources.sql_incremental.values import Kind, TimeAxis

log = logging.getLogger(__name__)
T = TypeVar("T")
_CURSOR_LAGS: weakref.WeakKeyDictionary[Metrics, dict[str, float]] = weakref.WeakKeyDictionary()


_CLOCK_SKEWS: weakref.WeakKeyDictionary[Metrics, dict[str, float]] = weakref.WeakKeyDictionary()


def _gauge(
    registry: weakref.WeakKeyDictionary[Metrics, dict[str, float]],
    metrics: Metrics,
    name: str,
    help_text: str,
) -> dict[str, float]:
    values = registry.get(metrics)
    if values is None:
        values = registry[metrics] = {}
        metrics.gauge(name, help_text, "component", lambda: dict(values))
    return values


class DatabaseUnavailable(Exception):
    """The database does not answer; the read is retried with backoff."""


class SqlIncrementalSource(Source):
    """Reads new and changed rows of a SQL query, resumable and without loss or repeats."""

    Config = SqlIncrementalConfig
    config: SqlIncrementalConfig
    clock: Callable[[], float] | None = None
    """A clock to use instead of the database's (tests simulate the database's time with it);
    this host's time is ``context.clock``."""

    async def open(self, position: Any) -> None:
        cfg = self.config
        self.db = Database(cfg)
        metrics = self.context.metrics
        self.lags = _gauge(
            _CURSOR_LAGS,
            metrics,
            "sql_cursor_lag_seconds",
            "Seconds between now and the commit value of the last row read.",
        )
        self.skews = _gauge(
            _CLOCK_SKEWS,
            metrics,
            "sql_clock_skew_seconds",
            "The database's clock minus this host's, measured each round.",
        )
        self.skew = 0.0
        self.skew_reported = False
        self.database_clock = True
        kind = await self._call(self.db.probe, None)
        await self._measure_skew()
        self.axis = TimeAxis(kind, cfg.database_timezone)
        self.rows = RowConverter(cfg, self.axis, self.context.clock)
        if position:
            self.cursor = Cursor.from_json(position)
            if self.cursor.value is not None:
                self._adapt_kind(self.cursor.value)
        else:
            self.cursor = Cursor(value=self._start_value())
        log.info(
            "sql source %s: reading %s from %s (commit column %s, key %s)",
            self.id,
            "the start" if self.cursor.value is None else f"at {self.cursor.value}",
            self.db.engine.url.render_as_string(hide_password=True),
            cfg.commit_column,
            ", ".join(cfg.key_columns),
        )

    async def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            await asyncio.to_thread(db.close)

    def _start_value(self) -> Any:
        start = self.config.start_value
        if start is None:
            return None
        if isinstance(start, int):
            return start
        if start.strip().lower().startswith("now"):
            if not self.axis.kind.is_time:
                raise ConfigurationError("start_value: `now` needs a time commit column")
            return self.axis.from_epoch(self.now() - start_offset_s(start))
        if self.axis.kind.is_time:
            try:
                return self.axis.parse_start(start)
            except ValueError:
                raise ConfigurationError(
                    f"start_value: {start!r} is not an ISO 8601 time"
                ) from None
        return start

    def _adapt_kind(self, value: Any) -> None:
        """SQLite has no column types: let the values say what the commit column holds."""
        if self.axis.kind is Kind.TEXT_TIME and not isinstance(value, str):
            self.axis.kind = Kind.OTHER
        self.axis.observe(value)

    # -- the loop -------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[SourceBatch]:
        while True:
            started = self.context.clock.monotonic()
            async for batch in self.read_round():
                yield batch
            pause = self.config.min_interval_s - (self.context.clock.monotonic() - started)
            if pause > 0:
                await asyncio.sleep(pause)

    def now(self) -> float:
        """Seconds since the epoch by the database's clock: the commit values come from there,
        so the safety lag holds however far this host's clock is off."""
        if self.clock is not None:
            return self.clock()
        return self.context.clock.time() + self.skew

    async def _measure_skew(self) -> None:
        if self.clock is not None or not self.database_clock:
            return
        host = self.context.clock
        before = host.time()
        try:
            database_now = await self._call(self.db.now)
        except ConfigurationError as exc:
            database_now = None
            log.warning("sql source %s: using this host's clock: %s", self.id, exc)
        if database_now is None:
            self.database_clock = False
            return
        self.skew = database_now - (before + host.time()) / 2
        self.skews[self.id] = self.skew
        if abs(self.skew) > 1.0 and not self.skew_reported:
            self.skew_reported = True
            log.warning(
                "sql source %s: the database's clock is %+.1f s from this host's; "
                "reading by the database's",
                self.id,
                self.skew,
            )

    async def read_round(self) -> AsyncIterator[SourceBatch]:
        """One round: rescan the window behind the cursor, then read forward until caught up."""
        await self._measure_skew()
        now = self.now()
        async for batch in self._rescan(now):
            yield batch
        async for batch in self._forward(now):
            yield batch

    async def _rescan(self, now: float) -> AsyncIterator[SourceBatch]:
        cfg, cursor, axis = self.config, self.cursor, self.axis
        if cursor.value is None or cfg.rescan_window_s <= 0 or not axis.kind.is_time:
            cursor.scanned_at = now
            return
        lower = self._rescan_bound(cursor.value, cursor.scanned_at)
        after: tuple[Any, ...] | None = None
        if lower <= cursor.value:
            while True:
                page = await self._call(self.db.fetch, lower, after, cursor.value, cfg.batch_rows)
                self.context.metrics.inc(self.id, "sql_rows_reread", len(page))
                batch = self._late_rows(page)
                if batch is not None:
                    yield batch
                if len(page) < cfg.batch_rows:
                    break
                after = self.rows.last_cursor(page)
        cursor.scanned_at = now

    def _rescan_bound(self, value: Any, scanned_at: float | None) -> Any:
        """The oldest commit value a late transaction can have that the last reads missed."""
        cfg = self.config
        lower = self.axis.shift(value, -cfg.rescan_window_s)
        if scanned_at is not None:
            since = self.axis.from_epoch(scanned_at - cfg.safety_lag_s - cfg.rescan_window_s)
            lower = max(lower, since)
        return lower

    def _late_rows(self, page: Fetched) -> SourceBatch | None:
        cursor = self.cursor
        converted = self.rows.convert(page)
        fresh = [
            i
            for i, (value, key) in enumerate(converted.versions())
            if not cursor.was_emitted(value, key)
        ]
        self.context.metrics.inc(self.id, "sql_rows_already_emitted", len(page) - len(fresh))
        if not fresh:
            return None
        for i in fresh:
            cursor.remember(converted.values[i], converted.key(i))
        log.warning(
            "sql source %s: %d rows committed late behind the cursor were caught by the rescan",
            self.id,
            len(fresh),
        )
        self.context.metrics.inc(self.id, "sql_rows_late", len(fresh))
        return SourceBatch(converted.records(fresh), position=cursor.to_json())

    async def _forward(self, now: float) -> AsyncIterator[SourceBatch]:
        cfg, cursor, axis = self.config, self.cursor, self.axis
        upper = axis.from_epoch(now - cfg.safety_lag_s) if axis.kind.is_time else None
        committed = cursor.value if cursor.value is not None else axis.floor()
        after = None if cursor.value is None or cursor.key is None else self._after()
        first = asyncio.ensure_future(self._fetch(committed, after, upper))
        pending = asyncio.ensure_future(self._next_page(first, upper))
        fetching: asyncio.Future[Fetched] | None = first
        try:
            while True:
                converted, fetching = await pending
                if fetching is not None:  # convert the next page while this one is delivered
                    pending = asyncio.ensure_future(self._next_page(fetching, upper))
                if len(converted):
                    yield self._forward_rows(converted, now)
                if fetching is None:
                    return
        finally:
            if pending.done() and not pending.cancelled() and pending.exception() is None:
                fetching = pending.result()[1]  # started by a page that was never delivered
            for task in (pending, fetching):
                if task is not None and not task.done():
                    task.cancel()

    async def _next_page(
        self, fetching: asyncio.Future[Fetched], upper: Any
    ) -> tuple[Converted, asyncio.Future[Fetched] | None]:
        """A fetched page, converted; the query for the page after it is sent first, so the
        database works on it while this one is converted (``None`` after the last page)."""
        page = await fetching
        following = None
        if len(page) >= self.config.batch_rows:
            after = self.rows.last_cursor(page)
            following = asyncio.ensure_future(self._fetch(after[0], after, upper))
        try:
            return await asyncio.to_thread(self.rows.convert, page), following
        except BaseException:
            if following is not None:
                following.cancel()
            raise

    async def _fetch(self, committed: Any, after: tuple[Any, ...] | None, upper: Any) -> Fetched:
        return await self._call(self.db.fetch, committed, after, upper, self.config.batch_rows)

    def _after(self) -> tuple[Any, ...]:
        assert self.cursor.key is not None
        return (self.cursor.value, *self.cursor.key)

    def _forward_rows(self, converted: Converted, now: float) -> SourceBatch:
        cfg, cursor = self.config, self.cursor
        self.context.metrics.inc(self.id, "sql_rows_read", len(converted))
        records = converted.records()
        if cursor.seen:  # a rescan may have emitted rows tied with the cursor's value
            fresh = [
                i
                for i, (value, key) in enumerate(converted.versions())
                if not cursor.was_emitted(value, key)
            ]
            if len(fresh) < len(converted):
                self.context.metrics.inc(
                    self.id, "sql_rows_already_emitted", len(converted) - len(fresh)
                )
                records = converted.records(fresh)
        cursor.value, cursor.key = converted.values[-1], converted.key(-1)
        self._adapt_kind(cursor.value)
        if self.axis.kind.is_time and cfg.rescan_window_s > 0:
            bound = self._rescan_bound(cursor.value, now)
            cursor.forget_before(bound)
            values = converted.values
            for i in [i for i, value in enumerate(values) if value >= bound]:
                cursor.remember(values[i], converted.key(i))  # older: beyond any rescan
        epoch = self.axis.to_epoch(cursor.value)
        if epoch is not None:
            self.lags[self.id] = max(0.0, self.now() - epoch)
        return SourceBatch(records, position=cursor.to_json())

    # -- retries --------------------------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call in a thread; back off and retry while it is down."""
        cfg = self.config
        pause = cfg.retry_initial_s
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(function, *args)
            except ConfigurationError:
                raise
            except Exception as exc:
                if _ZONE_REFUSED.search(str(exc)):
                    raise ConfigurationError(
                        f"database_timezone {cfg.database_timezone!r}: the database refused it: "
                        f"{_first_line(exc)}"
                    ) from exc
                if not _TIMED_OUT.search(str(exc)) and await asyncio.to_thread(self.db.alive):
                    raise ConfigurationError(
                        f"sql source {self.id}: the query failed: {_first_line(exc)}"
                    ) from exc
                attempt += 1
                self.context.metrics.inc(self.id, "errors")
                log.warning(
                    "sql source %s: database unavailable (attempt %d): %s; retrying in %.1f s",
                    self.id,
                    attempt,
                    _first_line(exc),
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(cfg.retry_max_s, pause * 2)


_TIMED_OUT = re.compile(
    r"statement timeout|max_statement_time|timed? ?out|Lost connection", re.IGNORECASE
)  # a read the database cancelled for taking too long: passing, not a broken query
_ZONE_REFUSED = re.compile(
    r"time ?zone", re.IGNORECASE
)  # PostgreSQL: invalid value for parameter "TimeZone"; MariaDB: Unknown or incorrect time zone


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
