"""Schedules: ISO 8601 repeating intervals exactly as Chronos takes them, and cron.

Chronos reads ``R[n]/[start]/period`` with Joda-Time: ``n`` digits only (none: forever), the
start in ISO 8601 extended format (calendar, week or ordinal date, an optional time whose last
element may carry a fraction, an optional offset) or empty for "now", and a period
``PnYnMnWnDTnHnMnS`` whose seconds may be fractional. Everything else is rejected here with a
message that says which part is wrong.

Slot ``k`` is ``start + k * period``: years, months, weeks and days move the wall-clock time in
the schedule's zone (so ``P1D`` keeps 02:00 across DST, and ``P1M`` from Jan 31 gives Feb 29,
Mar 31), hours, minutes and seconds are exact elapsed time.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

_ISO = re.compile(r"^R(?P<n>[0-9]*)/(?P<start>[^/]*)/(?P<period>[^/]*)$")
_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})(?:-(?P<day>\d{2}))?"
    r"|W(?P<week>\d{2})(?:-(?P<wday>\d))?|(?P<yday>\d{3})))?$"
)
_TIME = re.compile(
    r"^(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?"
    r"(?:[.,](?P<frac>\d+))?(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_PERIOD = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$"
)
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
ISO_FORMS = "R[n]/[start]/period, e.g. R/2016-07-21T00:00:00Z/PT1H or R5//P1D"


class ScheduleError(ValueError):
    """A schedule expression that cannot be used; the message says what is wrong."""


class Schedule(Protocol):
    """A sequence of slot times."""

    def next_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after ``moment`` (``None``: no more slots)."""
        ...

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last slot at or before ``moment`` (``None``: none yet)."""
        ...


@dataclass(frozen=True)
class Period:
    """An ISO 8601 duration, field by field."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: float = 0.0

    @property
    def calendar_months(self) -> int:
        """Months to add per step (years included)."""
        return self.years * 12 + self.months

    @property
    def calendar_days(self) -> int:
        """Days to add per step (weeks included)."""
        return self.weeks * 7 + self.days

    @property
    def exact_seconds(self) -> float:
        """Elapsed seconds per step from hours, minutes and seconds."""
        return self.hours * 3600 + self.minutes * 60 + self.seconds

    def approx_seconds(self) -> float:
        """A rough length, to estimate slot numbers."""
        return (
            self.calendar_months * 30.436875 * 86400
            + self.calendar_days * 86400
            + self.exact_seconds
        )


@dataclass(frozen=True)
class IsoSchedule:
    """``R[n]/start/period``; ``start`` is ``None`` when the expression left it empty."""

    repetitions: int | None
    start: datetime | None
    period: Period
    zone: tzinfo

    def anchored(self, start: datetime) -> IsoSchedule:
        """This schedule with an empty start replaced by ``start``."""
        return self if self.start is not None else replace(self, start=start)

    def slot(self, k: int) -> datetime:
        """The ``k``-th slot (from 0), in UTC."""
        assert self.start is not None, "anchor an empty start first"
        local = self.start.astimezone(self.zone).replace(tzinfo=None)
        local = _add_months(local, k * self.period.calendar_months)
        local += timedelta(days=k * self.period.calendar_days)
        moved = local.replace(tzinfo=self.zone).astimezone(UTC)
        return moved + timedelta(seconds=k * self.period.exact_seconds)

    def _first_index_after(self, moment: datetime) -> int:
        assert self.start is not None
        elapsed = (moment - self.start).total_seconds()
        k = max(0, math.floor(elapsed / self.period.approx_seconds()) - 2)
        while k > 0 and self.slot(k - 1) > moment:
            k -= 1
        while self.slot(k) <= moment:
            k += 1
        return k

    def next_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after ``moment``."""
        k = self._first_index_after(moment)
        if self.repetitions is not None and k >= self.repetitions:
            return None
        return self.slot(k)

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last slot at or before ``moment``."""
        k = self._first_index_after(moment) - 1
        if self.repetitions is not None:
            k = min(k, self.repetitions - 1)
        return self.slot(k) if k >= 0 else None


@dataclass(frozen=True)
class CronSchedule:
    """A 5-field cron expression evaluated in a time zone (DST as cronie does it)."""

    expression: str
    zone: tzinfo

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching minute strictly after ``moment``."""
        start = moment.astimezone(self.zone)
        return next(CronSim(self.expression, start)).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last matching minute at or before ``moment``."""
        start = (moment + timedelta(seconds=1)).replace(microsecond=0).astimezone(self.zone)
        return next(CronSim(self.expression, start, reverse=True)).astimezone(UTC)


def parse_schedule(text: str, time_zone: str | None) -> IsoSchedule | CronSchedule:
    """Parse an ISO 8601 repeating interval (``R...``) or a cron expression."""
    stripped = text.strip()
    if stripped.startswith("R"):
        return parse_iso(stripped, time_zone)
    return parse_cron(stripped, time_zone or "UTC")


def parse_cron(text: str, time_zone: str) -> CronSchedule:
    """A cron expression (5 fields or an @alias) in an IANA time zone."""
    expression = _ALIASES.get(text.lower(), text)
    if len(expression.split()) != 5:
        raise ScheduleError(
            f"{text!r} is neither an ISO 8601 repeating interval ({ISO_FORMS}) nor a 5-field "
            "cron expression (minute hour day-of-month month day-of-week, or @daily ...)"
        )
    zone = ZoneInfo(time_zone)
    try:
        next(CronSim(expression, datetime.now(zone)))
    except (CronSimError, StopIteration) as exc:
        raise ScheduleError(f"invalid cron expression {text!r}: {exc or 'never matches'}") from None
    return CronSchedule(expression, zone)


def parse_iso(text: str, time_zone: str | None) -> IsoSchedule:
    """An ISO 8601 repeating interval as Chronos accepts it."""
    match = _ISO.match(text)
    if match is None:
        raise ScheduleError(f"{text!r} is not an ISO 8601 repeating interval ({ISO_FORMS})")
    repetitions = int(match["n"]) if match["n"] else None
    period = parse_period(match["period"], text)
    zone: tzinfo = ZoneInfo(time_zone) if time_zone else UTC
    start = None
    if match["start"]:
        start = parse_start(match["start"], text)
        if time_zone:
            # Chronos' scheduleTimeZone keeps the wall-clock fields and changes the zone.
            start = start.replace(tzinfo=zone)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        else:
            zone = start.tzinfo
    return IsoSchedule(repetitions, start, period, zone)


def parse_period(text: str, expression: str) -> Period:
    """``PnYnMnWnDTnHnMnS``, seconds possibly fractional; must be longer than zero."""
    match = _PERIOD.match(text)
    if not text or match is None or text.endswith("T") or text == "P":
        raise ScheduleError(
            f"{expression!r}: the period {text!r} is not an ISO 8601 duration "
            "PnYnMnWnDTnHnMnS (e.g. PT1H, P1D, PT0.5S, P1Y2M3W4DT5H6M7.5S)"
        )
    values = {k: v for k, v in match.groupdict().items() if v is not None}
    seconds = float(values.pop("seconds", "0").replace(",", "."))
    period = Period(seconds=seconds, **{k: int(v) for k, v in values.items()})
    if period.approx_seconds() <= 0:
        raise ScheduleError(f"{expression!r}: the period {text!r} must be longer than zero")
    return period


def parse_start(text: str, expression: str) -> datetime:
    """An ISO 8601 extended date-time as Joda's parser takes it (naive if no offset)."""
    date_text, sep, time_text = text.partition("T")
    match = _DATE.match(date_text)
    if match is None or (sep and not time_text):
        raise ScheduleError(
            f"{expression!r}: the start {text!r} is not an ISO 8601 extended date-time "
            "(YYYY[-MM[-DD]] or YYYY-Www[-D] or YYYY-DDD, then optionally Thh[:mm[:ss]][.f] "
            "and Z or ±hh[:mm]); leave it empty for 'now'"
        )
    try:
        day = _date(match)
        return _combine(day, time_text, expression, text) if sep else _midnight(day)
    except ValueError as exc:
        raise ScheduleError(
            f"{expression!r}: the start {text!r} is not a real date: {exc}"
        ) from None


def _date(match: re.Match[str]) -> date:
    year = int(match["year"])
    if match["week"]:
        return date.fromisocalendar(year, int(match["week"]), int(match["wday"] or 1))
    if match["yday"]:
        yday = int(match["yday"])
        if not 1 <= yday <= (366 if calendar.isleap(year) else 365):
            raise ValueError(f"day of year {yday} out of range")
        return date(year, 1, 1) + timedelta(days=yday - 1)
    return date(year, int(match["month"] or 1), int(match["day"] or 1))


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)  # noqa: DTZ001 - zone applied by the caller


def _combine(day: date, time_text: str, expression: str, text: str) -> datetime:
    match = _TIME.match(time_text)
    if match is None:
        raise ScheduleError(
            f"{expression!r}: the time in {text!r} is not hh[:mm[:ss]][.fraction][Z|±hh[:mm]]"
        )
    hour, minute, second = (int(match[k] or 0) for k in ("hour", "minute", "second"))
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("hour, minute or second out of range")
    moment = _midnight(day) + timedelta(hours=hour, minutes=minute, seconds=second)
    if match["frac"]:
        unit = 1.0 if match["second"] else 60.0 if match["minute"] else 3600.0
        moment += timedelta(seconds=float("0." + match["frac"]) * unit)
    offset = match["offset"]
    if offset is None:
        return moment
    if offset == "Z":
        return moment.replace(tzinfo=UTC)
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return moment.replace(tzinfo=timezone(delta if offset[0] == "+" else -delta))


def _add_months(moment: datetime, months: int) -> datetime:
    if not months:
        return moment
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last))
