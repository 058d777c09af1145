"""From envelopes to time-series points: measurement, tags and fields.

The rules, in order (shared by the ``timeseries`` and ``influxdb`` sinks):

1. A ``measurements`` rule in the sink's settings for the record's measurement names its tags
   and fields.
2. Otherwise the record's own ``idb_tags`` / ``idb_fields`` (the MONIT convention); without
   ``idb_fields`` every other payload value that is a number or a boolean is a field.
3. Otherwise, for ``agg`` records: the payload's string values are the group keys, hence tags,
   and its numbers are fields.
4. Otherwise (``raw`` / ``enr`` without ``idb_tags``): no tags, numeric payload values as fields.

Payload keys listed in ``exclude_fields`` (sequence numbers, window bounds) are never fields.
The measurement is ``{producer}_{type}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from pydantic import BaseModel, ConfigDict, Field

from gridwatch.record import Record

DEFAULT_EXCLUDED = (
    "seq",
    "window_start",
    "window_end",
    "window_start_ms",
    "window_end_ms",
    "timestamp",
)
MAX_TAG_VALUE_CHARS = 256

FieldValue = float | int | bool | str


class MeasurementRule(BaseModel):
    """Which payload keys of one measurement are tags and which are fields."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(
        default_factory=list, description="Payload keys whose values become tags."
    )
    fields: list[str] | None = Field(
        None, description="Payload keys whose values become fields (null: every numeric key)."
    )


class PointRules(BaseModel):
    """The settings that decide how records become points (shared by time-series sinks)."""

    model_config = ConfigDict(extra="forbid")

    measurements: dict[str, MeasurementRule] = Field(
        default_factory=dict,
        description="Tags and fields per measurement (`{producer}_{type}`), overriding the "
        "records' own idb_tags / idb_fields.",
    )
    exclude_fields: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDED),
        description="Payload keys that are never fields (sequence numbers, window bounds).",
    )


@dataclass(frozen=True)
class Point:
    """One record as a point: where it goes and what it carries."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    timestamp_ms: int
    replaces_by_time: bool
    """True when the point is identified by (measurement, tags, time), as in InfluxDB; False
    when it is one event among many that may share a millisecond (keyed by the record id)."""


def measurement_of(record: Record) -> str:
    """The measurement name of a record: ``{producer}_{type}``."""
    return f"{record.producer}_{record.type}"


class PointMaker:
    """Applies :class:`PointRules` to records."""

    def __init__(self, rules: PointRules) -> None:
        self.rules = rules
        self.excluded = frozenset(rules.exclude_fields)

    def point(self, record: Record) -> Point:
        """The point of ``record``; raises ``ValueError`` (with the reason) if it has none."""
        measurement = measurement_of(record)
        data = record.data
        rule = self.rules.measurements.get(measurement)
        if rule is not None:
            tags = _tags(data, rule.tags)
            fields = self._fields(data, rule.fields, set(rule.tags), numeric_only=False)
            by_time = record.type_prefix == "agg"
        elif record.idb_tags is not None or record.idb_fields is not None:
            tag_keys = record.idb_tags or []
            tags = _tags(data, tag_keys)
            fields = self._fields(data, record.idb_fields, set(tag_keys), numeric_only=False)
            by_time = True
        elif record.type_prefix == "agg":
            group_keys = [k for k, v in data.items() if isinstance(v, str)]
            tags = _tags(data, group_keys)
            fields = self._fields(data, None, set(group_keys), numeric_only=True)
            by_time = True
        else:
            tags = {}
            fields = self._fields(data, None, set(), numeric_only=True)
            by_time = False
        if not fields:
            raise ValueError(f"{measurement}: the record has no field values to store")
        return Point(measurement, tags, fields, record.timestamp, by_time)

    def _fields(
        self,
        data: Mapping[str, Any],
        keys: list[str] | None,
        tag_keys: set[str],
        numeric_only: bool,
    ) -> dict[str, FieldValue]:
        if keys is None:
            return {
                k: v
                for k, v in data.items()
                if k not in tag_keys and k not in self.excluded and _is_number(v)
            }
        out: dict[str, FieldValue] = {}
        for key in keys:
            found = data.get(key)
            if _is_number(found) or (not numeric_only and isinstance(found, str)):
                out[key] = found
        return out


def _is_number(value: Any) -> TypeGuard[float | int | bool]:
    if isinstance(value, bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _tags(data: Mapping[str, Any], keys: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for key in keys:
        value = data.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if len(text) > MAX_TAG_VALUE_CHARS:
            raise ValueError(f"tag {key!r} is longer than {MAX_TAG_VALUE_CHARS} characters")
        tags[key] = text
    return tags


def numeric_value(value: FieldValue) -> float | None:
    """A field value as a float for numeric stores (booleans are 0/1, strings have none)."""
    if isinstance(value, str):
        return None
    return float(value)
