"""Database values: exact JSON for records, a typed JSON codec for positions, and time axes.

Seed 000 (4.2.2) fixed two problems of the JDBC reader: whole numbers printed as floats
(``896.0`` for a ``NUMBER(12,0)``) and big numbers printed in exponent form
(``1.45678886E9``). Here whole decimals become integers, other decimals stay exact in
fixed-point notation, and naive timestamps are read in an explicit database time zone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)  # noqa: DTZ001 - the naive twin of _EPOCH, for UTC databases
_FLOOR = datetime(1900, 1, 1)  # noqa: DTZ001 - before any row a monitoring database holds
_PLAIN_FLOAT_MIN = 1e-6
_PLAIN_FLOAT_MAX = 1e15

Converter = Callable[[Any], Any]


class Kind(Enum):
    """What the commit column holds, which decides how bounds are computed."""

    NAIVE_TIME = "naive_time"  # timestamps without zone, in the database time zone
    AWARE_TIME = "aware_time"  # timestamps with zone
    TEXT_TIME = "text_time"  # ISO text (SQLite has no time type)
    OTHER = "other"  # numbers or text: no safety lag, no rescan

    @property
    def is_time(self) -> bool:
        """Whether values are points in time (so lag and rescan apply)."""
        return self is not Kind.OTHER


class TimeAxis:
    """Converts between wall-clock seconds and commit values of one kind in one zone."""

    def __init__(self, kind: Kind, zone_name: str, text_separator: str = " ") -> None:
        self.kind = kind
        self.zone = ZoneInfo(zone_name)
        self.utc = zone_name == "UTC"
        self.separator = text_separator

    def floor(self) -> Any:
        """A value before every row (where a first run without start value begins)."""
        if self.kind is Kind.NAIVE_TIME:
            return _FLOOR
        if self.kind is Kind.AWARE_TIME:
            return _FLOOR.replace(tzinfo=UTC)
        if self.kind is Kind.TEXT_TIME:
            return "0000"
        return None

    def from_epoch(self, seconds: float) -> Any:
        """The commit value of a wall-clock instant."""
        if self.kind is Kind.AWARE_TIME:
            return datetime.fromtimestamp(seconds, UTC)
        local = datetime.fromtimestamp(seconds, self.zone).replace(tzinfo=None)
        if self.kind is Kind.TEXT_TIME:
            return local.isoformat(sep=self.separator, timespec="seconds")
        return local

    def as_datetime(self, value: Any) -> datetime | None:
        """A commit value as an aware datetime, or ``None`` when it is not a time."""
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=self.zone)
        if isinstance(value, str) and self.kind is Kind.TEXT_TIME:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=self.zone)
        return None

    def to_epoch(self, value: Any) -> float | None:
        """Wall-clock seconds of a commit value (``None`` when it is not a time)."""
        moment = self.as_datetime(value)
        return None if moment is None else moment.timestamp()

    def shift(self, value: Any, seconds: float) -> Any:
        """The commit value ``seconds`` later (earlier when negative)."""
        epoch = self.to_epoch(value)
        if epoch is None:
            return value
        if isinstance(value, datetime):
            return value + timedelta(seconds=seconds)
        return self.from_epoch(epoch + seconds)

    def parse_start(self, text: str) -> Any:
        """A configured ISO 8601 start value as a commit value of this kind."""
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        return self.from_epoch(parsed.timestamp())

    def observe(self, value: Any) -> None:
        """Learn the text layout (``T`` or space) from a value the database returned."""
        if isinstance(value, str) and len(value) > 10 and value[10] in "T ":
            self.separator = value[10]

    def datetime_converter(self, time_format: str) -> Converter:
        """Convert the database's datetimes to UTC epoch ms or ISO 8601 text."""
        zone = self.zone
        if time_format == "iso":

            def to_iso(value: datetime) -> str:
                aware = value if value.tzinfo else value.replace(tzinfo=zone)
                text = aware.astimezone(UTC).isoformat()
                return text.replace("+00:00", "Z")

            return to_iso
        if self.utc:

            def to_ms_utc(value: datetime) -> int:
                if value.tzinfo is None:
                    return (value - _EPOCH_NAIVE) // _MS
                return (value - _EPOCH) // _MS

            return to_ms_utc

        def to_ms(value: datetime) -> int:
            aware = value if value.tzinfo else value.replace(tzinfo=zone)
            return (aware - _EPOCH) // _MS

        return to_ms

    def text_time_converter(self, time_format: str) -> Converter:
        """Convert ISO text times (SQLite) like the database's own datetimes."""
        from_datetime = self.datetime_converter(time_format)

        def convert(value: Any) -> Any:
            if not isinstance(value, str):
                return value
            try:
                return from_datetime(datetime.fromisoformat(value))
            except ValueError:
                return value

        return convert


def decimal_converter(decimal_format: str, scale: int | None = None) -> Converter:
    """Whole decimals to int; others exact, in fixed-point, as JSON numbers or strings.

    A column declared with scale 0 (``NUMBER(12,0)``) holds integers only; one with a
    positive scale always has a fraction; without a declared scale each value decides.
    """
    as_number = decimal_format == "number"
    if scale == 0:
        return int
    if scale is not None and as_number:
        return lambda value: (
            msgspec.Raw(format(value, "f").encode()) if value.is_finite() else str(value)
        )

    def convert(value: Decimal) -> Any:
        if not value.is_finite():
            return str(value)
        if value.as_tuple().exponent >= 0:  # type: ignore[operator]
            return int(value)
        text = format(value, "f")
        return msgspec.Raw(text.encode()) if as_number else text

    return convert


def _float(value: float) -> Any:
    magnitude = abs(value)
    if magnitude == 0 or _PLAIN_FLOAT_MIN <= magnitude < _PLAIN_FLOAT_MAX:
        return value
    if not math.isfinite(value):
        return None
    return msgspec.Raw(format(Decimal(repr(value)), "f").encode())


def _bytes(value: bytes | memoryview) -> str:
    return bytes(value).hex()


def _identity(value: Any) -> Any:
    return value


def _date(value: date) -> str:
    return value.isoformat()


def _timedelta(value: timedelta) -> float:
    return value.total_seconds()


_BY_TYPE: tuple[tuple[type | tuple[type, ...], Converter], ...] = (
    (float, _float),
    ((date, time), _date),
    ((bytes, memoryview), _bytes),
    (timedelta, _timedelta),
)


def converter_for(
    sample: Any, axis: TimeAxis, time_format: str, decimal_format: str, scale: int | None = None
) -> Converter:
    """How to turn values like ``sample`` into exact JSON-ready values."""
    if sample is None or isinstance(sample, bool | int | str):
        return _identity
    if isinstance(sample, datetime):
        return axis.datetime_converter(time_format)
    if isinstance(sample, Decimal):
        return decimal_converter(decimal_format, scale)
    for types, convert in _BY_TYPE:
        if isinstance(sample, types):
            return convert
    return str


def convert_column(values: Sequence[Any], convert: Converter) -> list[Any]:
    """Apply a converter to one column, keeping NULLs."""
    if convert is _identity:
        return list(values)
    return [None if v is None else convert(v) for v in values]


def first_not_null(values: Sequence[Any]) -> Any:
    """The first value that is not NULL (``None`` if all are)."""
    for value in values:
        if value is not None:
            return value
    return None


# -- the position codec: commit values and keys as plain JSON, losing nothing -------------


def encode_value(value: Any) -> Any:
    """A commit or key value as plain JSON that :func:`decode_value` turns back exactly."""
    if value is None or isinstance(value, bool | int | str | float):
        return value
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, bytes | memoryview):
        return {"bytes": bytes(value).hex()}
    raise TypeError(f"cannot keep a {type(value).__name__} in a position: {value!r}")


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if not isinstance(value, dict):
        return value
    ((tag, text),) = value.items()
    if tag == "datetime":
        return datetime.fromisoformat(text)
    if tag == "date":
        return date.fromisoformat(text)
    if tag == "decimal":
        return Decimal(text)
    if tag == "bytes":
        return bytes.fromhex(text)
    raise ValueError(f"unknown value tag {tag!r} in a stored position")


def token(value: Any) -> bytes:
    """Stable bytes of a commit or key value, for record ids."""
    if isinstance(value, datetime | date):
        return value.isoformat().encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()
