"""The embedded time-series store: raw points and 10 min / 30 min / 1 h / 1 d rollups in DuckDB.

One :class:`TimeSeriesStore` holds one DuckDB database. The sink writes it from worker threads
and the query API reads it from others: every thread works on its own cursor of the one
database object, so reads see committed writes and never block them for long.

Points are upserted: a point identified by (series, field, time, rid) replaces an older revision
of itself (``rid`` is empty for points identified by time, as in InfluxDB, and the record id
for events). Every write recomputes the rollup bins it touched from the tier below, so a
revised bin replaces its older revision in every tier. A bin whose source rows have already
expired (a write later than the finer tier's retention) is merged into instead.

A rollup tier that a store starts keeping later (the 30-minute tier of a store written before
it existed) is filled from the finer tier's kept bins when the store opens; one it no longer
keeps is dropped, since nothing would keep its bins up to date.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from gridwatch.record import canonical_json, hash64
from gridwatch.serving.points import Point, numeric_value
from gridwatch.serving.tiers import RAW, ROLLUPS, Tier, kept

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_id BIGINT NOT NULL, measurement VARCHAR NOT NULL, tags VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    series_id BIGINT NOT NULL, field VARCHAR NOT NULL, ts BIGINT NOT NULL,
    rid VARCHAR NOT NULL, value DOUBLE NOT NULL
);
"""
_ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    series_id BIGINT NOT NULL, field VARCHAR NOT NULL, bin BIGINT NOT NULL,
    n BIGINT NOT NULL, total DOUBLE NOT NULL, lo DOUBLE NOT NULL, hi DOUBLE NOT NULL,
    last_value DOUBLE NOT NULL, last_ts BIGINT NOT NULL
)
"""
_STAGED = pa.schema(
    [
        ("series_id", pa.int64()),
        ("field", pa.string()),
        ("ts", pa.int64()),
        ("rid", pa.string()),
        ("value", pa.float64()),
        ("ord", pa.int64()),
    ]
)


def series_id(measurement: str, tags: Mapping[str, str]) -> int:
    """A stable signed 64-bit id of a series (measurement plus its tag set)."""
    return hash64(measurement.encode() + b"\0" + canonical_json(dict(tags)))


@dataclass(frozen=True)
class Series:
    """A measurement's series: its id and tags."""

    id: int
    measurement: str
    tags: dict[str, str]


@dataclass
class StagedPoints:
    """Points waiting to be written, as columns."""

    series_id: list[int] = dataclasses.field(default_factory=list)
    field: list[str] = dataclasses.field(default_factory=list)
    ts: list[int] = dataclasses.field(default_factory=list)
    rid: list[str] = dataclasses.field(default_factory=list)
    value: list[float] = dataclasses.field(default_factory=list)
    new_series: dict[int, Series] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)

    def table(self) -> pa.Table:
        """The staged points as an Arrow table (``ord`` keeps their arrival order)."""
        return pa.table(
            [
                pa.array(self.series_id, pa.int64()),
                pa.array(self.field, pa.string()),
                pa.array(self.ts, pa.int64()),
                pa.array(self.rid, pa.string()),
                pa.array(self.value, pa.float64()),
                pa.array(range(len(self.ts)), pa.int64()),
            ],
            schema=_STAGED,
        )


DEFAULT_THREADS = 1
"""DuckDB threads per store. Queries and writes here are small (tens of milliseconds); on a
busy machine one thread per query does the same work with less CPU, and a parallel query's
latency is that of its most delayed thread."""


class TimeSeriesStore:
    """A DuckDB database of series, points and rollups; safe to use from many threads."""

    def __init__(
        self,
        path: Path,
        retention_ms: Mapping[str, int | None],
        clock: Callable[[], float] = time.time,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.retention_ms = dict(retention_ms)
        self.tiers = kept(self.retention_ms)
        self.rollups = self.tiers[1:]
        self.clock = clock
        self._db = duckdb.connect(str(path), config={"threads": threads})
        self._local = threading.local()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        cur = self.cursor()
        cur.execute(_SCHEMA)
        existing = {
            row[0] for row in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        source = RAW
        for tier in self.rollups:
            if tier.table not in existing:
                # One transaction: a crash between creating and filling must not leave it empty.
                cur.execute("BEGIN")
                cur.execute(_ROLLUP_SCHEMA.format(table=tier.table))
                if source is not RAW:
                    _fill_from(cur, tier, source)
                cur.execute("COMMIT")
            source = tier
        for tier in ROLLUPS:
            if tier not in self.rollups and tier.table in existing:
                # Bins this store no longer keeps would go stale: keeping it again refills them.
                cur.execute(f"DROP TABLE {tier.table}")
        self._series: dict[int, Series] = {}
        self._by_measurement: dict[str, dict[int, Series]] = {}
        self._add_series(
            Series(sid, measurement, msgspec.json.decode(tags))
            for sid, measurement, tags in cur.execute(
                "SELECT series_id, measurement, tags FROM series"
            ).fetchall()
        )
        # Field names per measurement, kept in memory: a query without ``fields`` needs them.
        self._fields: dict[str, set[str]] = {}
        self._load_fields(cur)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection to the database."""
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._db.cursor()
            self._local.cursor = cur
        return cur

    def now_ms(self) -> int:
        """The store's clock, in UTC milliseconds."""
        return round(self.clock() * 1000)

    # -- series ----------------------------------------------------------------------------

    def series_of(self, measurement: str) -> list[Series]:
        """Every series of ``measurement``."""
        with self._lock:
            return list(self._by_measurement.get(measurement, {}).values())

    def measurements(self) -> dict[str, int]:
        """Measurement names with their number of series."""
        with self._lock:
            return {name: len(series) for name, series in sorted(self._by_measurement.items())}

    def fields_of(self, measurement: str) -> list[str]:
        """The field names that ``measurement`` has in the coarsest tier."""
        with self._lock:
            return sorted(self._fields.get(measurement, ()))

    def _add_series(self, new: Iterable[Series]) -> None:
        for series in new:
            self._series[series.id] = series
            self._by_measurement.setdefault(series.measurement, {})[series.id] = series

    def _load_fields(self, cur: duckdb.DuckDBPyConnection) -> None:
        rows = cur.execute(
            "SELECT DISTINCT s.measurement, r.field "
            "FROM rollup_1d r JOIN series s USING (series_id)"
        ).fetchall()
        fields: dict[str, set[str]] = {}
        for measurement, name in rows:
            fields.setdefault(measurement, set()).add(name)
        with self._lock:
            self._fields = fields

    # -- writing ---------------------------------------------------------------------------

    def stage(self, staged: StagedPoints, point: Point, rid: str) -> int:
        """Add one point's numeric fields to ``staged``; return how many (strings are not)."""
        sid = series_id(point.measurement, point.tags)
        with self._lock:
            known = sid in self._series
        if not known and sid not in staged.new_series:
            staged.new_series[sid] = Series(sid, point.measurement, point.tags)
        key = "" if point.replaces_by_time else rid
        count = 0
        for name, raw in point.fields.items():
            value = numeric_value(raw)
            if value is None:
                continue
            count += 1
            staged.series_id.append(sid)
            staged.field.append(name)
            staged.ts.append(point.timestamp_ms)
            staged.rid.append(key)
            staged.value.append(value)
        return count

    def write(self, staged: StagedPoints) -> None:
        """Upsert the staged points and recompute the rollup bins they touch, atomically."""
        if not len(staged):
            return
        with self._write_lock:
            cur = self.cursor()
            cur.register("staged", staged.table())
            try:
                cur.execute("BEGIN")
                self._write_series(cur, staged.new_series.values())
                self._upsert_points(cur)
                source = RAW
                for tier in self.rollups:
                    self._roll_up(cur, tier, source)
                    source = tier
                written = cur.execute("SELECT DISTINCT series_id, field FROM batch").fetchall()
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.unregister("staged")
            with self._lock:
                self._add_series(staged.new_series.values())
                for sid, name in written:
                    self._fields.setdefault(self._series[sid].measurement, set()).add(name)

    def _write_series(self, cur: duckdb.DuckDBPyConnection, new: Iterable[Series]) -> None:
        rows = [(s.id, s.measurement, canonical_json(s.tags).decode()) for s in new]
        if rows:
            cur.executemany("INSERT INTO series VALUES (?, ?, ?)", rows)

    def _upsert_points(self, cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE batch AS "
            "SELECT series_id, field, ts, rid, arg_max(value, ord) AS value "
            "FROM staged GROUP BY series_id, field, ts, rid"
        )
        lo, hi = cur.execute("SELECT min(ts), max(ts) FROM batch").fetchone() or (0, 0)
        cur.execute(
            "DELETE FROM points p USING batch b WHERE p.ts BETWEEN ? AND ? "
            "AND p.series_id = b.series_id AND p.field = b.field AND p.ts = b.ts "
            "AND p.rid = b.rid",
            [lo, hi],
        )
        cur.execute("INSERT INTO points SELECT series_id, field, ts, rid, value FROM batch")

    def _roll_up(self, cur: duckdb.DuckDBPyConnection, tier: Tier, source: Tier) -> None:
        """Recompute ``tier``'s bins that the batch touched from ``source``."""
        width = tier.width_ms
        cutoff = self._cutoff(source)
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT series_id, field, "
            f"(ts // {width}) * {width} AS bin FROM batch"
        )
        lo, hi = cur.execute("SELECT min(bin), max(bin) FROM touched").fetchone() or (0, 0)
        if source is RAW:
            from_source = (
                "SELECT t.series_id, t.field, t.bin, count(*) AS n, sum(p.value) AS total, "
                "min(p.value) AS lo, max(p.value) AS hi, arg_max(p.value, p.ts) AS last_value, "
                "max(p.ts) AS last_ts FROM touched t JOIN points p "
                "ON p.series_id = t.series_id AND p.field = t.field "
                f"AND p.ts >= t.bin AND p.ts < t.bin + {width} "
                f"WHERE p.ts >= ? AND p.ts < ? + {width} AND t.bin >= ? "
                "GROUP BY t.series_id, t.field, t.bin"
            )
        else:
            from_source = (
                "SELECT t.series_id, t.field, t.bin, sum(r.n) AS n, sum(r.total) AS total, "
                "min(r.lo) AS lo, max(r.hi) AS hi, arg_max(r.last_value, r.last_ts) "
                "AS last_value, max(r.last_ts) AS last_ts FROM touched t "
                f"JOIN {source.table} r ON r.series_id = t.series_id AND r.field = t.field "
                f"AND r.bin >= t.bin AND r.bin < t.bin + {width} "
                f"WHERE r.bin >= ? AND r.bin < ? + {width} AND t.bin >= ? "
                "GROUP BY t.series_id, t.field, t.bin"
            )
        # Bins whose source rows expired: merge the batch's contribution into what is kept.
        merged = (
            "SELECT series_id, field, bin, sum(n) AS n, sum(total) AS total, min(lo) AS lo, "
            "max(hi) AS hi, arg_max(last_value, last_ts) AS last_value, max(last_ts) AS last_ts "
            "FROM (SELECT series_id, field, "
            f"(ts // {width}) * {width} AS bin, 1 AS n, value AS total, value AS lo, "
            "value AS hi, value AS last_value, ts AS last_ts FROM batch "
            f"WHERE (ts // {width}) * {width} < ? "
            f"UNION ALL SELECT r.* FROM {tier.table} r "
            "JOIN touched t USING (series_id, field, bin) "
            "WHERE t.bin < ?) GROUP BY series_id, field, bin"
        )
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE fresh AS {from_source} UNION ALL {merged}",
            [lo, hi, cutoff, cutoff, cutoff],
        )
        cur.execute(
            f"DELETE FROM {tier.table} r USING touched t WHERE r.bin BETWEEN ? AND ? "
            "AND r.series_id = t.series_id AND r.field = t.field AND r.bin = t.bin",
            [lo, hi],
        )
        cur.execute(f"INSERT INTO {tier.table} SELECT * FROM fresh")

    def _cutoff(self, tier: Tier) -> int:
        keep = self.retention_ms.get(tier.name)
        return -(2**62) if keep is None else self.now_ms() - keep

    def enforce_retention(self) -> int:
        """Delete rows older than each tier's retention; return how many went."""
        deleted = 0
        with self._write_lock:
            cur = self.cursor()
            for tier in self.tiers:
                if self.retention_ms.get(tier.name) is None:
                    continue
                column = "ts" if tier is RAW else "bin"
                row = cur.execute(
                    f"DELETE FROM {tier.table} WHERE {column} < ?", [self._cutoff(tier)]
                ).fetchone()
                deleted += int(row[0]) if row else 0
            if deleted:
                self._load_fields(cur)
        return deleted

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file."""
        with self._write_lock:
            self.cursor().execute("CHECKPOINT")

    def count_rows(self, tier: Tier) -> int:
        """Rows in one tier's table (for tests and the pipeline page)."""
        row = self.cursor().execute(f"SELECT count(*) FROM {tier.table}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the database (every thread's cursor with it)."""
        self._db.close()


def _fill_from(cur: duckdb.DuckDBPyConnection, tier: Tier, source: Tier) -> None:
    """Fill a newly kept rollup tier from the bins of the finer ``source`` tier."""
    width = tier.width_ms
    cur.execute(
        f"INSERT INTO {tier.table} SELECT series_id, field, (bin // {width}) * {width} AS b, "
        "sum(n), sum(total), min(lo), max(hi), arg_max(last_value, last_ts), max(last_ts) "
        f"FROM {source.table} GROUP BY series_id, field, b ORDER BY series_id, field, b"
    )


_OPEN: dict[Path, TimeSeriesStore] = {}
_OPEN_LOCK = threading.Lock()


def open_store(
    path: Path, retention_ms: Mapping[str, int | None], threads: int = DEFAULT_THREADS
) -> TimeSeriesStore:
    """The process's one store object for ``path`` (DuckDB allows one per file)."""
    key = path.resolve()
    with _OPEN_LOCK:
        store = _OPEN.get(key)
        if store is None:
            store = TimeSeriesStore(key, retention_ms, threads=threads)
            _OPEN[key] = store
        return store


def close_store(store: TimeSeriesStore) -> None:
    """Close ``store`` and forget it."""
    with _OPEN_LOCK:
        _OPEN.pop(store.path, None)
    store.close()


def describe(store: TimeSeriesStore) -> dict[str, Any]:
    """Row counts per tier, for the pipeline page."""
    return {tier.name: store.count_rows(tier) for tier in store.tiers}
