"""Daylight saving time in a schedule's preview: which fire times it moves or repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter

from app import schedule


def fire_marks(times: list[datetime], expression: str = "") -> list[str]:
    """A note per fire time where daylight saving time shows: a fire moved out of a
    gap, the two passes of a repeated hour, a UTC offset unlike the previous fire's."""
    parsed = schedule.parse(expression) if expression else None
    marks: list[str] = []
    previous: timedelta | None = None
    for when in times:
        notes = []
        offset = when.utcoffset()
        instant = when.astimezone(UTC)
        before = (instant - timedelta(seconds=1)).astimezone(when.tzinfo).utcoffset()
        wall = when.replace(tzinfo=None)
        jumped = before is not None and offset is not None and offset > before
        # A cron fire at the instant the clocks jump forward whose wall time the
        # expression does not name was moved there out of the skipped hour.
        if jumped and parsed is not None and parsed.kind == "cron":
            fields = " ".join(parsed.fields)
            if not croniter.match(fields, wall, day_or=True, second_at_beginning=True):
                notes.append(f"DST gap → {when:%H:%M}")
        folded = wall.replace(tzinfo=when.tzinfo, fold=1 - when.fold).utcoffset() != offset
        if folded:
            notes.append(f"repeated hour, {'2nd' if when.fold else '1st'}")
        if previous is not None and offset != previous:
            notes.append(f"UTC offset {_offset(previous)} → {_offset(offset)}")
        previous = offset
        marks.append("; ".join(notes))
    return marks


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
