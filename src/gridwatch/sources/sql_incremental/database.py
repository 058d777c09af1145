"""Talking to the database: connections with an explicit time zone, pages, and liveness.

SQLAlchemy Core provides the URL handling, the dialects, the connection pool and the
translation of named parameters to each driver's style; the rows themselves are fetched from
the driver's cursor as plain tuples (the hot path skips SQLAlchemy's row objects).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gridwatch.errors import ConfigurationError
from gridwatch.sources.sql_incremental.config import SqlIncrementalConfig
from gridwatch.sources.sql_incremental.query import (
    Page,
    page_statement,
    prepare,
    uses_text_placeholder,
)
from gridwatch.sources.sql_incremental.values import Kind

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

_PG_NAIVE = {1114}  # timestamp
_PG_AWARE = {1184}  # timestamptz
_MYSQL_TIMES = {7, 12}  # TIMESTAMP, DATETIME
_ORACLE_NAIVE = {"DB_TYPE_DATE", "DB_TYPE_TIMESTAMP"}
_ORACLE_AWARE = {"DB_TYPE_TIMESTAMP_TZ", "DB_TYPE_TIMESTAMP_LTZ"}


class QueryError(ConfigurationError):
    """The query fails although the database answers: a mistake in the query or settings."""


class Fetched:
    """One page: column names as the database reported them, and its rows.

    psycopg holds a whole result on the client side, so its rows become Python tuples only in
    :meth:`take_rows`, right before they are converted (and freed again before the cyclic
    garbage collector, paused meanwhile, would walk tens of thousands of them).
    """

    def __init__(
        self,
        names: list[str],
        rows: list[tuple[Any, ...]] | None,
        scales: list[int | None] | None = None,
        result: Any = None,
    ) -> None:
        self.names = names
        self.scales = scales
        self._rows = rows
        self._result = result  # a psycopg cursor whose rows are not loaded yet
        self._size = len(rows) if rows is not None else int(result.rowcount)
        self.last_row: tuple[Any, ...] | None = None
        if rows:
            self.last_row = rows[-1]
        elif self._size:
            result.scroll(self._size - 1, "absolute")
            self.last_row = result.fetchone()
            result.scroll(0, "absolute")

    def __len__(self) -> int:
        return self._size

    def take_rows(self) -> list[tuple[Any, ...]]:
        """The rows (made now if the driver still holds them); the page keeps no reference."""
        rows = self._rows
        if rows is None:
            rows = list(self._result.fetchall()) if self._size else []
            self._result.close()
            self._result = None
        self._rows = []
        return rows


def _sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ImportError:
        raise ConfigurationError(
            "the sql_incremental source needs SQLAlchemy and the drivers: "
            "pip install 'gridwatch[sql]' (add 'gridwatch[oracle]' for Oracle)"
        ) from None
    return sqlalchemy


_NOW = {
    "postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())",
    "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
    "mariadb": "SELECT UNIX_TIMESTAMP(NOW(6))",
    "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
    "oracle": "SELECT (CAST(SYS_EXTRACT_UTC(SYSTIMESTAMP) AS DATE) - DATE '1970-01-01') * 86400 "
    "FROM dual",
}
"""Seconds since the epoch by the database server's clock, per dialect."""


def _mysql_zone(zone: str) -> str:
    return "+00:00" if zone == "UTC" else zone


class Database:
    """A pooled connection to the source database and the statements of one query."""

    def __init__(self, config: SqlIncrementalConfig) -> None:
        sa = _sqlalchemy()
        self.config = config
        try:
            url = sa.engine.make_url(config.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"url: {exc}") from None
        if config.password is not None:
            url = url.set(password=config.password.get_secret_value())
        self.dialect_name: str = url.get_backend_name()
        try:
            self.engine: Engine = sa.create_engine(
                url, pool_size=1, max_overflow=0, connect_args=self._connect_args()
            )
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigurationError(
                f"url: no driver for {url.drivername} ({exc}); install 'gridwatch[sql]'"
            ) from None
        if self.dialect_name == "oracle":
            self._oracle_session_setup(sa)
        self.prepared = prepare(config.query)
        self.text_placeholder = uses_text_placeholder(self.prepared)
        self._compiled: dict[Page, tuple[str, Any]] = {}
        # psycopg 3 receives a whole result before execute returns and keeps it after commit
        self.client_side_result = (
            self.dialect_name == "postgresql" and self.engine.dialect.driver == "psycopg"
        )

    def _connect_args(self) -> dict[str, Any]:
        cfg = self.config
        zone = cfg.database_timezone
        timeout_ms = int(cfg.query_timeout_s * 1000)
        if self.dialect_name == "postgresql":
            return {
                "options": f"-c TimeZone={zone} -c statement_timeout={timeout_ms}",
                "connect_timeout": 10,
            }
        if self.dialect_name in ("mysql", "mariadb"):
            return {
                "init_command": f"SET time_zone = '{_mysql_zone(zone)}'",
                "connect_timeout": 10,
                "read_timeout": max(1, int(cfg.query_timeout_s)),
            }
        if self.dialect_name == "sqlite":
            return {"timeout": 30}
        return {}

    def _oracle_session_setup(self, sa: Any) -> None:
        zone = self.config.database_timezone

        def _session(dbapi_connection: Any, _record: Any) -> None:  # pragma: no cover
            import oracledb  # type: ignore[import-not-found,unused-ignore]

            # NUMBER values as Decimal (exact), never float; zone for TIMESTAMP WITH LOCAL TZ.
            oracledb.defaults.fetch_decimals = True
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"ALTER SESSION SET TIME_ZONE = '{zone}'")

        sa.event.listen(self.engine, "connect", _session)

    def _statement(self, page: Page) -> tuple[str, Any]:
        compiled = self._compiled.get(page)
        if compiled is None:
            sa = _sqlalchemy()
            sql = page_statement(
                self.dialect_name,
                self.prepared,
                self.config.commit_column,
                self.config.key_columns,
                page,
            )
            compiled = (sql, sa.text(sql).compile(dialect=self.engine.dialect))
            self._compiled[page] = compiled
        return compiled

    def fetch(
        self,
        committed_value: Any,
        after: tuple[Any, ...] | None,
        upper: Any,
        limit: int,
        probe: bool = False,
    ) -> Fetched:
        """Rows at or after ``committed_value``, strictly after ``after``, up to ``upper``."""
        page = Page(after=after is not None, upper=upper is not None, probe=probe)
        _, compiled = self._statement(page)
        values: dict[str, Any] = {"committed_value": committed_value}
        if not probe:
            values["gw_limit"] = limit
        if self.text_placeholder:
            values["committed_value_text"] = _as_text(committed_value)
        if after is not None:
            values.update({f"gw_after_{i}": v for i, v in enumerate(after)})
        if upper is not None:
            values["gw_upper"] = upper
        params = compiled.construct_params(values)
        if compiled.positional:
            args: Any = tuple(params[name] for name in compiled.positiontup)
        else:
            args = {name: params[name] for name in params}
        connection = self.engine.raw_connection()
        try:
            cursor = self._cursor(connection)
            try:
                cursor.execute(compiled.string, args)
                names = [d[0] for d in cursor.description]
                self.last_description = cursor.description
                if self.client_side_result:  # loaded later, by Fetched.take_rows
                    scales = [_scale(d) for d in cursor.description]
                    fetched = Fetched(names, None, scales, cursor)
                else:
                    rows = list(cursor.fetchall())
                    fetched = Fetched(names, rows, [_scale(d) for d in cursor.description])
            finally:
                if not self.client_side_result:
                    cursor.close()
            connection.commit()  # end the read transaction: the next read sees new commits
        except Exception:
            connection.invalidate()
            raise
        finally:
            connection.close()
        return fetched

    def _cursor(self, connection: Any) -> Any:
        if self.dialect_name == "postgresql" and self.config.binary_protocol:
            # psycopg's binary format parses numbers and timestamps faster than text
            return connection.dbapi_connection.cursor(binary=True)
        return connection.cursor()

    def probe(self, committed_value: Any) -> Kind:
        """Check the query and columns (no rows read); return what the commit column holds."""
        fetched = self.fetch(committed_value, None, None, 0, probe=True)
        names = {name.lower(): i for i, name in enumerate(fetched.names)}
        wanted = [self.config.commit_column, *self.config.key_columns]
        missing = [c for c in wanted if c.lower() not in names]
        if missing:
            raise QueryError(
                f"the query's result has no column {', '.join(missing)} "
                f"(commit_column / key_columns); it has: {', '.join(fetched.names)}"
            )
        type_code = self.last_description[names[self.config.commit_column.lower()]][1]
        self.fetch(committed_value, None, None, 0)  # the page statement itself runs too
        return self._kind(type_code)

    def _kind(self, type_code: Any) -> Kind:
        name = self.dialect_name
        if name == "postgresql":
            kinds: dict[Any, Kind] = {
                **dict.fromkeys(_PG_NAIVE, Kind.NAIVE_TIME),
                **dict.fromkeys(_PG_AWARE, Kind.AWARE_TIME),
            }
            return kinds.get(type_code, Kind.OTHER)
        if name in ("mysql", "mariadb"):
            return Kind.NAIVE_TIME if type_code in _MYSQL_TIMES else Kind.OTHER
        if name == "oracle":
            type_name = getattr(type_code, "name", "")
            kinds = {
                **dict.fromkeys(_ORACLE_NAIVE, Kind.NAIVE_TIME),
                **dict.fromkeys(_ORACLE_AWARE, Kind.AWARE_TIME),
            }
            return kinds.get(type_name, Kind.OTHER)
        return Kind.TEXT_TIME  # SQLite: decided by the values; text bounds are harmless

    def now(self) -> float | None:
        """The database server's clock, in seconds since the epoch (``None``: no such query
        for this dialect)."""
        sql = _NOW.get(self.dialect_name)
        if sql is None:
            return None
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql)
                row = cursor.fetchone()
                assert row is not None, "SELECT of one value returned no row"
                value = row[0]
            finally:
                cursor.close()
            connection.commit()
        except Exception:
            connection.invalidate()
            raise
        finally:
            connection.close()
        return float(value)

    def alive(self) -> bool:
        """Whether a fresh connection answers ``SELECT 1`` (tells outages from bad queries)."""
        self.engine.dispose()
        try:
            connection = self.engine.raw_connection()
        except Exception:
            return False
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1 FROM DUAL" if self.dialect_name == "oracle" else "SELECT 1")
            cursor.fetchall()
            cursor.close()
            return True
        except Exception:
            connection.invalidate()
            return False
        finally:
            connection.close()

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _scale(column: Any) -> int | None:
    """A numeric column's declared scale (digits after the point), when the driver says."""
    scale = getattr(column, "scale", None)  # psycopg's Column
    if scale is None and isinstance(column, tuple) and len(column) > 5:
        scale = column[5]  # DB-API: (name, type, display, internal, precision, scale, null)
    return scale if isinstance(scale, int) and scale >= 0 else None


def _as_text(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return None if value is None else str(value)
