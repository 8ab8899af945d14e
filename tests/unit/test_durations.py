"""The one duration parser (``90s``, ``15m``, ``2h``, ``1d``): the CLI, the API and ``@every``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app import schedule
from app.errors import InvalidDuration, InvalidSchedule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("0s", timedelta(0)),
        ("15M", timedelta(minutes=15)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_a_whole_number_and_a_unit_is_a_duration(text: str, expected: timedelta) -> None:
    assert schedule.parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "15", "m", "15x", "1.5h", "-5m", "15 m", " 15m", "15m ", "1h30m", "١٥m", "@once"]
)
def test_anything_else_is_refused_naming_it(text: str) -> None:
    with pytest.raises(InvalidDuration) as refused:
        schedule.parse_duration(text)
    assert repr(text) in str(refused.value)
    assert "use a whole number and s, m, h or d (e.g. 15m)" in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_a_duration_past_any_date_is_refused_not_overflowed() -> None:
    with pytest.raises(InvalidDuration, match="longer than any date"):
        schedule.parse_duration("9999999999999d")


def test_split_gives_the_count_and_the_lowercase_unit() -> None:
    assert schedule.split_duration("15M") == (15, "m")
    assert schedule.PERIODS["m"] == "minutes"


@pytest.mark.parametrize(
    ("expression", "every"),
    [("@every 15m", timedelta(minutes=15)), ("@EVERY 2H", timedelta(hours=2))],
)
def test_every_reads_its_interval_with_the_same_parser(expression: str, every: timedelta) -> None:
    assert schedule.parse(expression).every == every


@pytest.mark.parametrize(
    "expression", ["@every 5 m", "@every 1.5h", "@every15m", "@every", "@everyday 5m"]
)
def test_every_with_anything_but_a_duration_is_invalid(expression: str) -> None:
    with pytest.raises(InvalidSchedule, match="write intervals as '@every <n><unit>'"):
        schedule.parse(expression)
