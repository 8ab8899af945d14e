"""Beat's decisions without a server: which fires are due, which are misfires, what runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app import schedule
from beat.plan import MAX_DUE, Plan, Run, select_runs, split_misfires

GRACE = timedelta(seconds=60)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def at(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def plan(expression: str = "* * * * *", cursor: datetime = NOW, **fields: object) -> Plan:
    values: dict[str, object] = {
        "id": 1,
        "name": "p",
        "task": "demo.ping",
        "args": [],
        "kwargs": {},
        "queue": None,
        "priority": None,
        "expression": expression,
        "tz": ZoneInfo("UTC"),
        "cron": schedule.validate(expression),
        "misfire": "fire_once",
        "catch_up_limit": 10,
        "overlap": "skip",
        "one_off": False,
        "start_time": None,
        "expires": None,
        "cursor": cursor,
        **fields,
    }
    built = Plan(**values)  # type: ignore[arg-type]
    built.compute_next()
    return built


def test_fires_after_the_cursor_up_to_now_are_due_oldest_first() -> None:
    assert plan(cursor=at(3)).due(NOW) == [at(2), at(1), at(0)]
    assert plan(cursor=NOW).due(NOW) == []


def test_the_next_fire_is_the_first_after_the_cursor() -> None:
    assert plan(cursor=at(0.5)).next_fire == NOW
    assert plan("0 * * * *", cursor=NOW).next_fire == NOW + timedelta(hours=1)


def test_nothing_before_the_start_time_is_due() -> None:
    started = plan(cursor=at(10), start_time=at(2))
    assert started.next_fire == at(2)
    assert started.due(NOW) == [at(2), at(1), at(0)]


def test_a_clocked_schedule_is_due_once_at_its_instant() -> None:
    once = plan("@once", cursor=at(5), at=at(1))
    assert once.next_fire == at(1)
    assert once.due(at(2)) == []
    assert once.due(NOW) == [at(1)]
    assert plan("@once", cursor=at(1), at=at(1)).next_fire is None


def test_a_fine_schedule_down_for_ages_keeps_its_oldest_and_its_last_hour_of_fires() -> None:
    down = plan("* * * * * *", cursor=NOW - timedelta(days=1))
    due = down.due(NOW)
    assert len(due) < MAX_DUE
    assert due[0] == NOW - timedelta(days=1) + timedelta(seconds=1)
    assert due[1] == NOW - timedelta(hours=1) + timedelta(seconds=1)
    assert due[-1] == NOW


@pytest.mark.parametrize(
    ("next_fire", "expires", "lag_s"),
    [(at(2), None, 120.0), (NOW + timedelta(minutes=1), None, 0.0), (at(2), at(3), 0.0)],
)
def test_lag_is_how_long_the_next_fire_has_waited(
    next_fire: datetime, expires: datetime | None, lag_s: float
) -> None:
    late = plan(expires=expires)
    late.next_fire = next_fire
    assert late.lag_s(NOW) == lag_s


def test_fires_later_than_the_grace_are_misfires() -> None:
    due = [at(5), at(2), at(0.5), at(0)]
    assert split_misfires(due, NOW, GRACE, None) == ([at(5), at(2)], [at(0.5), at(0)])


def test_fires_while_beat_was_not_firing_are_misfires_however_recent() -> None:
    due = [at(0.5), at(0)]
    assert split_misfires(due, NOW, GRACE, appeared_after=at(0.5)) == ([at(0.5)], [at(0)])


MISSED = [at(4), at(3), at(2)]
NOTE = f"3 fire(s) missed since {at(4).isoformat()}"


@pytest.mark.parametrize(
    ("misfire", "limit", "expected"),
    [
        ("fire_once", 10, [Run(at(2), f"misfire, one run now: {NOTE}"), Run(NOW)]),
        (
            "catch_up",
            2,
            [Run(at(3), f"catch-up: {NOTE}"), Run(at(2), f"catch-up: {NOTE}"), Run(NOW)],
        ),
        ("skip", 10, [Run(at(2), f"skipped by misfire policy: {NOTE}", missed=True), Run(NOW)]),
    ],
)
def test_the_misfire_policy_turns_misfires_into_runs(
    misfire: str, limit: int, expected: list[Run]
) -> None:
    runs = select_runs([*MISSED, NOW], NOW, grace=GRACE, misfire=misfire, catch_up_limit=limit)
    assert runs == expected


def test_on_time_fires_all_run_and_need_no_note() -> None:
    runs = select_runs([at(0.5), at(0)], NOW, grace=GRACE, misfire="skip", catch_up_limit=1)
    assert runs == [Run(at(0.5)), Run(at(0))]


def test_fires_after_the_expiry_do_not_run() -> None:
    runs = select_runs(
        [*MISSED, NOW],
        NOW,
        grace=GRACE,
        misfire="catch_up",
        catch_up_limit=10,
        expires=at(3),
    )
    assert [run.fire_time for run in runs] == [at(4), at(3)]
