"""Queries over the time-series store: the parameters, the plan and the answer.

A query names a measurement, its fields, a time range, the tags to group by, tag filters, an
aggregate and the most points a series may have. It reads the coarsest tier that still gives
that resolution (see :func:`gridwatch.serving.tiers.plan`) and returns one series per field
and group. Status fields (``status_fields``) are always aggregated as their worst (highest)
value, so a zoomed-out view never hides a short outage.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from gridwatch.record import RecordError, to_epoch_ms
from gridwatch.serving.store import Series, TimeSeriesStore
from gridwatch.serving.tiers import BY_NAME, RAW, Plan, plan

Aggregate = Literal["mean", "sum", "min", "max", "count", "last", "worst"]
AGGREGATES: tuple[str, ...] = ("mean", "sum", "min", "max", "count", "last", "worst")
MAX_POINTS_LIMIT = 100_000
_RELATIVE = re.compile(r"^(now)?\s*-\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|y)$")
_UNIT_MS = {
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
    "y": 365 * 86_400_000,
}
_ROLLUP_SQL = {
    "mean": "sum(r.total) / sum(r.n)",
    "sum": "sum(r.total)",
    "min": "min(r.lo)",
    "max": "max(r.hi)",
    "worst": "max(r.hi)",
    "count": "sum(r.n)::DOUBLE",
    "last": "arg_max(r.last_value, r.last_ts)",
}
_encode = msgspec.json.Encoder().encode
_RAW_SQL = {
    "mean": "avg(r.value)",
    "sum": "sum(r.value)",
    "min": "min(r.value)",
    "max": "max(r.value)",
    "worst": "max(r.value)",
    "count": "count(*)::DOUBLE",
    "last": "arg_max(r.value, r.ts)",
}


class QueryError(ValueError):
    """A query that cannot be answered as asked; the message says which parameter."""


@dataclass(frozen=True)
class Query:
    """What to read from the store."""

    measurement: str
    start_ms: int
    end_ms: int
    fields: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    where: dict[str, list[str]] = field(default_factory=dict)
    aggregate: Aggregate = "mean"
    max_points: int = 1000
    tier: str | None = None


class JsonArray:
    """A JSON array encoded in bulk, decoded only when Python needs the values."""

    __slots__ = ("encoded", "length")

    def __init__(self, encoded: bytes, length: int) -> None:
        self.encoded = encoded
        self.length = length

    def __len__(self) -> int:
        return self.length

    def raw(self) -> msgspec.Raw:
        """The array for embedding in an encoded answer as it is."""
        return msgspec.Raw(self.encoded)

    def decode(self) -> list[Any]:
        """The array's values."""
        decoded: list[Any] = msgspec.json.decode(self.encoded)
        return decoded


@dataclass
class SeriesResult:
    """One returned series: a field of one group, with its times and values."""

    field: str
    tags: dict[str, str]
    aggregate: str
    times: JsonArray
    values: JsonArray


@dataclass
class Result:
    """A query's answer and how it was computed."""

    query: Query
    plan: Plan
    series: list[SeriesResult]
    took_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON answer of ``/api/v1/query``."""
        return {
            "measurement": self.query.measurement,
            "start": self.query.start_ms,
            "end": self.query.end_ms,
            "tier": self.plan.tier.name,
            "interval_ms": self.plan.bucket_ms,
            "aggregate": self.query.aggregate,
            "points": sum(len(s.times) for s in self.series),
            "took_ms": round(self.took_ms, 3),
            "series": [
                {
                    "field": s.field,
                    "tags": s.tags,
                    "aggregate": s.aggregate,
                    "times": s.times.raw(),
                    "values": s.values.raw(),
                }
                for s in self.series
            ],
        }

    def to_arrow(self) -> pa.Table:
        """The answer in long form: time, field, one column per group-by tag, value."""
        times: list[int] = []
        fields: list[str] = []
        values: list[float | None] = []
        tags: dict[str, list[str | None]] = {k: [] for k in self.query.group_by}
        for s in self.series:
            times.extend(s.times.decode())
            fields.extend([s.field] * len(s.times))
            values.extend(s.values.decode())
            for key, column in tags.items():
                column.extend([s.tags.get(key)] * len(s.times))
        columns: dict[str, Any] = {
            "time": pa.array(times, pa.timestamp("ms", tz="UTC")),
            "field": pa.array(fields, pa.string()),
        }
        for key, column in tags.items():
            columns[f"tag_{key}"] = pa.array(column, pa.string())
        columns["value"] = pa.array(values, pa.float64())
        return pa.table(columns)


def parse_time(text: str, now_ms: int) -> int:
    """``now``, ``-6h`` / ``now-30d``, epoch seconds or milliseconds, or ISO 8601, as UTC ms."""
    value = text.strip()
    if value in ("", "now"):
        return now_ms
    match = _RELATIVE.match(value)
    if match:
        return now_ms - round(float(match.group(2)) * _UNIT_MS[match.group(3)])
    try:
        return to_epoch_ms(value)
    except RecordError:
        raise QueryError(f"cannot read time {text!r} (use now, -6h, epoch or ISO 8601)") from None


def parse_query(params: Mapping[str, str], where: list[str], now_ms: int) -> Query:
    """A :class:`Query` from URL parameters (``where`` may repeat: ``tag=value[|value...]``)."""
    measurement = params.get("measurement", "").strip()
    if not measurement:
        raise QueryError("measurement: required")
    start = parse_time(params.get("start", "-6h"), now_ms)
    end = parse_time(params.get("end", "now"), now_ms)
    if end <= start:
        raise QueryError("start must be before end")
    aggregate = params.get("aggregate", "mean")
    if aggregate not in AGGREGATES:
        raise QueryError(f"aggregate: {aggregate!r} is not one of {', '.join(AGGREGATES)}")
    try:
        max_points = int(params.get("max_points", "1000"))
    except ValueError:
        raise QueryError("max_points: expected a whole number") from None
    if not 1 <= max_points <= MAX_POINTS_LIMIT:
        raise QueryError(f"max_points: expected 1 to {MAX_POINTS_LIMIT}")
    tier = params.get("tier", "auto")
    if tier != "auto" and tier not in BY_NAME:
        raise QueryError(f"tier: {tier!r} is not auto, {', '.join(BY_NAME)}")
    filters: dict[str, list[str]] = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QueryError(f"where: expected tag=value, got {item!r}")
        filters.setdefault(key.strip(), []).extend(value.split("|"))
    return Query(
        measurement=measurement,
        start_ms=start,
        end_ms=end,
        fields=_names(params.get("fields", "")),
        group_by=_names(params.get("group_by", "")),
        where=filters,
        aggregate=aggregate,  # type: ignore[arg-type]
        max_points=max_points,
        tier=None if tier == "auto" else tier,
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _groups(
    series: list[Series], query: Query
) -> tuple[list[int], list[int], list[dict[str, str]]]:
    """Series ids that pass the filters, their group index, and each group's tags."""
    ids: list[int] = []
    group_of: list[int] = []
    groups: dict[tuple[str, ...], int] = {}
    keys = query.group_by
    every_tag = keys == ["*"]
    for s in series:
        if any(s.tags.get(k) not in allowed for k, allowed in query.where.items()):
            continue
        if every_tag:
            group = tuple(f"{k}={v}" for k, v in sorted(s.tags.items()))
        else:
            group = tuple(s.tags.get(k, "") for k in keys)
        ids.append(s.id)
        group_of.append(groups.setdefault(group, len(groups)))
    tags: list[dict[str, str]] = [{} for _ in groups]
    for group, index in groups.items():
        if every_tag:
            tags[index] = dict(item.split("=", 1) for item in group)
        else:
            tags[index] = {k: v for k, v in zip(keys, group, strict=True) if v}
    return ids, group_of, tags


def run_query(store: TimeSeriesStore, query: Query, status_fields: Collection[str] = ()) -> Result:
    """Answer ``query`` from ``store``."""
    started = time.perf_counter()
    try:
        chosen = plan(
            query.start_ms,
            query.end_ms,
            query.max_points,
            store.now_ms(),
            store.retention_ms,
            forced=query.tier,
        )
    except ValueError as exc:
        raise QueryError(f"tier: {exc}") from None
    ids, group_of, group_tags = _groups(store.series_of(query.measurement), query)
    fields = query.fields or store.fields_of(query.measurement)
    out: list[SeriesResult] = []
    if ids and fields:
        for name in fields:
            aggregate = "worst" if name in status_fields else query.aggregate
            out.extend(
                _read_field(
                    store,
                    query,
                    chosen,
                    name=name,
                    aggregate=aggregate,
                    ids=ids,
                    group_of=group_of,
                    group_tags=group_tags,
                )
            )
    return Result(query, chosen, out, (time.perf_counter() - started) * 1000)


def _read_field(
    store: TimeSeriesStore,
    query: Query,
    chosen: Plan,
    *,
    name: str,
    aggregate: str,
    ids: list[int],
    group_of: list[int],
    group_tags: list[dict[str, str]],
) -> list[SeriesResult]:
    width = chosen.bucket_ms
    tier = chosen.tier
    column = "ts" if tier is RAW else "bin"
    expression = (_RAW_SQL if tier is RAW else _ROLLUP_SQL)[aggregate]
    # Only the buckets leave DuckDB, as columns; they are split into series and encoded as JSON
    # arrays in bulk, so no Python code runs per point.
    sql = (
        "WITH sel AS (SELECT unnest(?::BIGINT[]) AS series_id, unnest(?::INTEGER[]) AS grp) "
        f"SELECT sel.grp AS grp, (r.{column} // {width}) * {width} AS t, {expression} AS v "
        f"FROM {tier.table} r JOIN sel ON r.series_id = sel.series_id "
        f"WHERE r.field = ? AND r.{column} >= ? AND r.{column} < ? GROUP BY sel.grp, t"
    )
    start = (query.start_ms // width) * width
    params = [ids, group_of, name, start, query.end_ms]
    columns = store.cursor().execute(sql, params).fetchnumpy()
    return [
        SeriesResult(
            name,
            group_tags[group],
            aggregate,
            JsonArray(_encode(times.tolist()), len(times)),
            JsonArray(_encode(values.tolist()), len(times)),
        )
        for group, times, values in _by_group(
            columns["grp"],
            columns["t"],
            columns["v"],
            start=start,
            width=width,
            count=len(group_tags),
        )
    ]


Columns = npt.NDArray[Any]


def _by_group(
    groups: Columns, times: Columns, values: Columns, *, start: int, width: int, count: int
) -> list[tuple[int, Columns, Columns]]:
    """Each group's bucket times and values in time order, from unordered bucket rows."""
    if not len(times):
        return []
    slots = int((times.max() - start) // width) + 1
    index = groups.astype(np.int64) * slots + (times - start) // width
    if count * slots > 4 * len(index) + 4096:  # sparse: sort rather than lay out every slot
        order = np.argsort(index)
        groups, times, values = groups[order], times[order], values[order]
        bounds = [0, *(np.flatnonzero(np.diff(groups)) + 1).tolist(), len(groups)]
        return [
            (int(groups[first]), times[first:last], values[first:last])
            for first, last in itertools.pairwise(bounds)
        ]
    # Dense (the usual case): scatter into a group x slot grid, read each group's filled slots.
    filled = np.zeros(count * slots, dtype=bool)
    filled[index] = True
    grid = np.empty(count * slots, dtype=values.dtype)
    grid[index] = values
    slot_times = start + np.arange(slots, dtype=np.int64) * width
    out: list[tuple[int, Columns, Columns]] = []
    for group in range(count):
        row = slice(group * slots, (group + 1) * slots)
        mask = filled[row]
        if mask.any():
            out.append((group, slot_times[mask], grid[row][mask]))
    return out
