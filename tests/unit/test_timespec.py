"""Schedule expressions: every ISO 8601 form Chronos accepts, cron with zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gridwatch.timespec import (
    CronSchedule,
    IsoSchedule,
    Period,
    ScheduleError,
    parse_schedule,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "start", "period", "repetitions"),
    [
        ("R/2016-07-21T00:00:00Z/PT1H", utc(2016, 7, 21), Period(hours=1), None),
        ("R5/2016-07-21T00:00:00Z/PT1H", utc(2016, 7, 21), Period(hours=1), 5),
        ("R0/2016-07-21T00:00:00Z/P1D", utc(2016, 7, 21), Period(days=1), 0),
        (
            "R/2016-07-21T00:00:00.250Z/PT1S",
            utc(2016, 7, 21, 0, 0, 0, 250000),
            Period(seconds=1),
            None,
        ),
        ("R/2016/P1Y", utc(2016, 1, 1), Period(years=1), None),
        ("R/2016-07/P1M", utc(2016, 7, 1), Period(months=1), None),
        ("R/2016-07-21/P1W", utc(2016, 7, 21), Period(weeks=1), None),
        ("R/2016-W30/P1D", utc(2016, 7, 25), Period(days=1), None),
        ("R/2016-W30-4/P1D", utc(2016, 7, 28), Period(days=1), None),
        ("R/2016-203/P1D", utc(2016, 7, 21), Period(days=1), None),
        ("R/2016-07-21T10/PT1M", utc(2016, 7, 21, 10), Period(minutes=1), None),
        ("R/2016-07-21T10:30/PT1M", utc(2016, 7, 21, 10, 30), Period(minutes=1), None),
        ("R/2016-07-21T10.5/PT1M", utc(2016, 7, 21, 10, 30), Period(minutes=1), None),
        ("R/2016-07-21T10:30,5/PT1M", utc(2016, 7, 21, 10, 30, 30), Period(minutes=1), None),
        ("R/2016-07-21T10:30:00+02:00/PT1H", utc(2016, 7, 21, 8, 30), Period(hours=1), None),
        ("R/2016-07-21T10:30:00-0530/PT1H", utc(2016, 7, 21, 16), Period(hours=1), None),
        ("R/2016-07-21T10:30:00+02/PT1H", utc(2016, 7, 21, 8, 30), Period(hours=1), None),
        ("R/2016-07-21T00:00:00Z/PT0.5S", utc(2016, 7, 21), Period(seconds=0.5), None),
        ("R/2016-07-21T00:00:00Z/PT1,5S", utc(2016, 7, 21), Period(seconds=1.5), None),
        (
            "R/2016-07-21T00:00:00Z/P1Y2M3W4DT5H6M7.25S",
            utc(2016, 7, 21),
            Period(1, 2, 3, 4, 5, 6, 7.25),
            None,
        ),
    ],
)
def test_iso_forms_chronos_accepts(
    text: str, start: datetime, period: Period, repetitions: int | None
) -> None:
    schedule = parse_schedule(text, None)
    assert isinstance(schedule, IsoSchedule)
    assert schedule.start == start
    assert schedule.period == period
    assert schedule.repetitions == repetitions


def test_empty_start_is_anchored_later() -> None:
    schedule = parse_schedule("R//PT10S", None)
    assert isinstance(schedule, IsoSchedule)
    assert schedule.start is None
    anchored = schedule.anchored(utc(2024, 1, 1))
    assert anchored.next_after(utc(2024, 1, 1, 0, 0, 5)) == utc(2024, 1, 1, 0, 0, 10)


def test_time_zone_keeps_the_wall_clock_like_chronos() -> None:
    schedule = parse_schedule("R/2016-07-21T10:00:00Z/P1D", "Europe/Zurich")
    assert isinstance(schedule, IsoSchedule)
    assert schedule.slot(0) == utc(2016, 7, 21, 8)  # 10:00 in Zurich, summer time


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("R/2016-07-21T00:00:00Z", "not an ISO 8601 repeating interval"),
        ("R/2016-07-21T00:00:00Z/", "the period '' is not an ISO 8601 duration"),
        ("R5", "not an ISO 8601 repeating interval"),
        ("R-1/2016/PT1H", "not an ISO 8601 repeating interval"),
        ("Rx/2016/PT1H", "not an ISO 8601 repeating interval"),
        ("R/2016/PT1H/extra", "not an ISO 8601 repeating interval"),
        ("R/20160721T000000Z/PT1H", "not an ISO 8601 extended date-time"),
        ("R/T10:00/PT1H", "not an ISO 8601 extended date-time"),
        ("R/2016-07-21T/PT1H", "not an ISO 8601 extended date-time"),
        ("R/2016-07-21 10:00/PT1H", "not an ISO 8601 extended date-time"),
        ("R/2016-13-01/P1D", "not a real date"),
        ("R/2016-02-30/P1D", "not a real date"),
        ("R/2015-366/P1D", "not a real date"),
        ("R/2016-W54/P1D", "not a real date"),
        ("R/2016-07-21T24:00/P1D", "not a real date"),
        ("R/2016-07-21T10:00:00+2/P1D", "is not hh[:mm[:ss]]"),
        ("R/2016/P", "is not an ISO 8601 duration"),
        ("R/2016/PT", "is not an ISO 8601 duration"),
        ("R/2016/P1.5D", "is not an ISO 8601 duration"),
        ("R/2016/PT1.5H", "is not an ISO 8601 duration"),
        ("R/2016/P-1D", "is not an ISO 8601 duration"),
        ("R/2016/P1H", "is not an ISO 8601 duration"),
        ("R/2016/P1D2Y", "is not an ISO 8601 duration"),
        ("R/2016/PT0S", "must be longer than zero"),
        ("R/2016/P0Y0D", "must be longer than zero"),
        ("* * *", "neither an ISO 8601 repeating interval"),
        ("61 * * * *", "invalid cron expression '61 * * * *': Bad minute"),
        ("0 0 31 2 *", "invalid cron expression"),
    ],
)
def test_invalid_schedules_are_rejected_clearly(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=None) as raised:
        parse_schedule(text, None)
    assert message in str(raised.value)


def test_months_do_not_drift_and_clamp_to_month_end() -> None:
    schedule = parse_schedule("R/2016-01-31T00:00:00Z/P1M", None)
    assert isinstance(schedule, IsoSchedule)
    slots = [schedule.slot(k).date().isoformat() for k in range(5)]
    assert slots == ["2016-01-31", "2016-02-29", "2016-03-31", "2016-04-30", "2016-05-31"]
    assert schedule.next_after(utc(2024, 2, 29)) == utc(2024, 3, 31)
    assert schedule.latest_at_or_before(utc(2024, 2, 29)) == utc(2024, 2, 29)


def test_repetitions_end_the_schedule() -> None:
    schedule = parse_schedule("R3/2020-01-01T00:00:00Z/PT1H", None)
    assert schedule.next_after(utc(2019, 1, 1)) == utc(2020, 1, 1)
    assert schedule.next_after(utc(2020, 1, 1, 1)) == utc(2020, 1, 1, 2)
    assert schedule.next_after(utc(2020, 1, 1, 2)) is None
    assert schedule.latest_at_or_before(utc(2030, 1, 1)) == utc(2020, 1, 1, 2)
    assert schedule.latest_at_or_before(utc(2019, 12, 31)) is None
    assert parse_schedule("R0/2020-01-01T00:00:00Z/PT1H", None).next_after(utc(2000, 1, 1)) is None


def test_fractional_seconds_step_exactly() -> None:
    schedule = parse_schedule("R/2020-01-01T00:00:00Z/PT0.25S", None)
    assert schedule.next_after(utc(2020, 1, 1, 0, 0, 1)) == utc(2020, 1, 1, 0, 0, 1, 250000)
    far = utc(2020, 6, 1, 12, 0, 0, 100000)
    assert schedule.next_after(far) == far + timedelta(microseconds=150000)


def test_days_keep_wall_clock_time_across_dst() -> None:
    schedule = parse_schedule("R/2024-03-30T02:30:00/P1D", "Europe/Zurich")
    assert isinstance(schedule, IsoSchedule)
    local = [schedule.slot(k).astimezone(ZoneInfo("Europe/Zurich")) for k in range(3)]
    # 02:30 does not exist on 31 March; the run happens an hour later, then 02:30 again.
    assert [t.strftime("%d %H:%M") for t in local] == ["30 02:30", "31 03:30", "01 02:30"]
    hours = parse_schedule("R/2024-03-30T23:00:00Z/PT24H", None)
    assert hours.next_after(utc(2024, 3, 31)) == utc(2024, 3, 31, 23)


def test_offset_start_without_zone_keeps_fixed_offset() -> None:
    schedule = parse_schedule("R/2024-03-30T02:30:00+01:00/P1D", None)
    assert isinstance(schedule, IsoSchedule)
    assert schedule.zone == timezone(timedelta(hours=1))
    assert schedule.slot(2) == utc(2024, 4, 1, 1, 30)


def test_cron_in_a_time_zone_with_dst() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Zurich")
    assert isinstance(schedule, CronSchedule)
    zurich = ZoneInfo("Europe/Zurich")
    spring = schedule.next_after(datetime(2024, 3, 31, 0, 0, tzinfo=zurich))
    assert spring is not None
    assert spring.astimezone(zurich).strftime("%m-%d %H:%M") == "03-31 03:00"
    autumn_first = schedule.next_after(datetime(2024, 10, 27, 0, 0, tzinfo=zurich))
    assert autumn_first is not None
    autumn_next = schedule.next_after(autumn_first)
    assert autumn_next is not None
    assert autumn_next - autumn_first == timedelta(hours=25)  # once on the repeated hour's day
    assert schedule.latest_at_or_before(utc(2024, 1, 2, 1, 30)) == utc(2024, 1, 2, 1, 30)


def test_cron_aliases_and_utc_default() -> None:
    schedule = parse_schedule("@hourly", None)
    assert schedule.next_after(utc(2024, 1, 1, 10, 0)) == utc(2024, 1, 1, 11, 0)
    assert schedule.latest_at_or_before(utc(2024, 1, 1, 10, 59, 59)) == utc(2024, 1, 1, 10, 0)
