"""app.schedule's cron: grammar, clear errors, and the DST rule, against beat's own due-check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from app import schedule
from app.errors import InvalidSchedule
from beat.plan import Plan
from beat.tables import expression_of

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "minute 61 out of range 0-59"),
        ("0 24 * * *", "hour 24 out of range 0-23"),
        ("0 0 0 * *", "day-of-month 0 out of range 1-31"),
        ("0 0 * 13 *", "month 13 out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 out of range 0-7"),
        ("60 * * * * *", "second 60 out of range 0-59"),
        ("0 0 * FOO *", "month 'FOO' is not a number or a name (JAN-DEC)"),
        ("0 0 * * FUN", "day-of-week 'FUN' is not a number or a name (SUN-SAT)"),
        ("*/0 * * * *", "minute step 0 must be at least 1"),
        ("30-10 * * * *", "minute range 30-10 runs backwards"),
        ("* * * *", "4 fields; expected 5"),
        ("0 0 30 2 *", "it can never fire"),
        ("0 0 31 4,6,9,11 *", "it can never fire"),
        ("@fortnightly", "unknown alias '@fortnightly'"),
        ("@every 0s", "at least one second"),
        ("@every 5 weeks", "write intervals as '@every <n><unit>'"),
        ("", "empty expression"),
    ],
)
def test_invalid_expressions_name_the_field_and_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        schedule.validate(expression)
    assert reason in str(caught.value)


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(InvalidSchedule, match="time zone 'Mars/Olympus' is unknown"):
        schedule.validate("0 0 * * *", "Mars/Olympus")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def previews(expression: str, start: datetime, n: int, tz: str = "UTC") -> list[str]:
    return [t.isoformat() for t in schedule.next_fire_times(expression, tz, n, after=start)]


def test_grammar_names_ranges_steps_lists_aliases_and_seconds() -> None:
    start = utc(2026, 11, 23, 10, 0, 30)  # a Monday
    assert previews("0 12 * * MON-FRI", start, 2) == [
        "2026-11-23T12:00:00+00:00",
        "2026-11-24T12:00:00+00:00",
    ]
    assert previews("*/20 * * * * *", start, 3) == [
        "2026-11-23T10:00:40+00:00",
        "2026-11-23T10:01:00+00:00",
        "2026-11-23T10:01:20+00:00",
    ]
    assert previews("0 0 28-31 * *", start, 4)[0] == "2026-11-28T00:00:00+00:00"
    assert previews("0 0 1 JAN,JUL *", start, 2) == [
        "2027-01-01T00:00:00+00:00",
        "2027-07-01T00:00:00+00:00",
    ]
    assert previews("@daily", start, 1) == ["2026-11-24T00:00:00+00:00"]
    assert previews("@midnight", start, 1) == previews("0 0 * * *", start, 1)
    assert previews("@weekly", start, 1) == ["2026-11-29T00:00:00+00:00"]
    assert previews("@monthly", start, 1) == ["2026-12-01T00:00:00+00:00"]
    assert previews("@yearly", start, 1) == previews("@annually", start, 1)
    assert previews("@hourly", start, 1) == ["2026-11-23T11:00:00+00:00"]
    assert previews("0 0 29 2 *", start, 1) == ["2028-02-29T00:00:00+00:00"]


def test_every_is_aligned_to_the_epoch() -> None:
    assert previews("@every 15m", utc(2026, 11, 23, 10, 7), 3) == [
        "2026-11-23T10:15:00+00:00",
        "2026-11-23T10:30:00+00:00",
        "2026-11-23T10:45:00+00:00",
    ]


def test_day_of_month_and_day_of_week_restricted_together_match_either() -> None:
    # Classic cron: the 13th OR any Friday. 2026-11-13 is itself a Friday.
    assert previews("0 0 13 * FRI", utc(2026, 11, 14), 4) == [
        "2026-11-20T00:00:00+00:00",
        "2026-11-27T00:00:00+00:00",
        "2026-12-04T00:00:00+00:00",
        "2026-12-11T00:00:00+00:00",
    ]
    assert previews("0 0 13 * FRI", utc(2026, 12, 12), 2) == [
        "2026-12-13T00:00:00+00:00",
        "2026-12-18T00:00:00+00:00",
    ]


# The DST table: every fire on the two 2026 transition days in Berlin, local times.
# Spring: 02:00 CET jumps to 03:00 CEST. Fall: 03:00 CEST goes back to 02:00 CET.
DST_TABLE = {
    ("30 2 * * *", "2026-03-29"): ["03:00+02:00"],  # in the gap: at the first instant after
    ("0 * * * *", "2026-03-29"): [f"{h:02d}:00+01:00" for h in (0, 1)]
    + [f"{h:02d}:00+02:00" for h in range(3, 24)],  # 02:00 and 03:00 are one instant
    ("*/30 1-3 * * *", "2026-03-29"): [
        "01:00+01:00",
        "01:30+01:00",
        "03:00+02:00",
        "03:30+02:00",
    ],
    ("0 2,4 * * *", "2026-03-29"): ["03:00+02:00", "04:00+02:00"],
    ("30 2 * * *", "2026-10-25"): ["02:30+02:00"],  # fixed: first occurrence only
    ("0 2 * * *", "2026-10-25"): ["02:00+02:00"],
    ("0 * * * *", "2026-10-25"): [f"{h:02d}:00+02:00" for h in range(3)]
    + ["02:00+01:00"]
    + [f"{h:02d}:00+01:00" for h in range(3, 24)],  # every real hour: 25 fires
    ("30 * * * *", "2026-10-25"): [f"{h:02d}:30+02:00" for h in range(3)]
    + ["02:30+01:00"]
    + [f"{h:02d}:30+01:00" for h in range(3, 24)],
    ("15 1-3 * * *", "2026-10-25"): ["01:15+02:00", "02:15+02:00", "02:15+01:00", "03:15+01:00"],
    ("0 2 * * 0", "2026-10-25"): ["02:00+02:00"],  # the weekly job of celery#10107: once
}


def day_bounds(day: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(day).replace(tzinfo=BERLIN)
    end = start + timedelta(days=1)
    return start.astimezone(UTC) - timedelta(microseconds=1), end.astimezone(UTC)


def beat_fires(expression: str, day: str, step: timedelta) -> list[datetime]:
    """Drive beat's own due-check over ``day`` with a clock stepping by ``step``."""
    start, end = day_bounds(day)
    plan = Plan(
        id=1,
        name="dst",
        task="demo.ping",
        args=[],
        kwargs={},
        queue=None,
        priority=None,
        expression=expression,
        tz=BERLIN,
        cron=schedule.validate(expression, "Europe/Berlin"),
        misfire="catch_up",
        catch_up_limit=100,
        overlap="allow",
        one_off=False,
        start_time=None,
        expires=None,
        cursor=start,
    )
    plan.compute_next()
    fired: list[datetime] = []
    now = start
    while now < end:
        now += step
        if plan.next_fire is not None and plan.next_fire <= now:
            due = plan.due(now)
            fired += due
            plan.cursor = due[-1]
            plan.compute_next()
    return [f for f in fired if f < end]


@pytest.mark.parametrize(("expression", "day"), list(DST_TABLE))
def test_dst_table_matches_preview_and_beats_due_check(expression: str, day: str) -> None:
    start, end = day_bounds(day)
    expected = [f"{day}T{time}" for time in DST_TABLE[(expression, day)]]
    preview = [
        t.isoformat(timespec="minutes")
        for t in schedule.next_fire_times(expression, "Europe/Berlin", 60, after=start)
        if t < end
    ]
    assert preview == expected
    for step in (timedelta(seconds=7), timedelta(minutes=10)):
        fired = [
            f.astimezone(BERLIN).isoformat(timespec="minutes")
            for f in beat_fires(expression, day, step)
        ]
        assert fired == expected, f"beat stepping by {step}"


def test_preview_starting_inside_the_repeated_hour_keeps_the_second_copy() -> None:
    inside = datetime(2026, 10, 25, 2, 40, tzinfo=BERLIN)  # first copy (CEST)
    assert previews("*/30 * * * *", inside.astimezone(UTC), 3, "Europe/Berlin") == [
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_expression_of_a_row_joins_the_seconds_field() -> None:
    row = SimpleNamespace(
        solar_id=None, minute="*/5", hour="*", day_of_month="*", month_of_year="*",
        day_of_week="*", second="10", crontab_tz="Europe/Berlin",
    )  # fmt: skip
    assert expression_of(vars(row)) == ("10 */5 * * * *", "Europe/Berlin")
