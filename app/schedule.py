"""Schedules: cron expressions and durations, parsed once and fired by one rule.

A leaf both :mod:`app.jobs` and :mod:`beat` use: it imports nothing of ours but
:mod:`app.errors`.

Durations (``90s``, ``15m``, ``2h``, ``1d``: a whole number and a unit s, m, h or
d, either case) are read by :func:`parse_duration` alone: the CLI's ``--in``, the
API's delays and ``@every`` below all call it.

Cron grammar: five fields (``minute hour day-of-month month day-of-week``) or six
with a leading seconds field (``second minute hour …``, as Quartz and Hangfire write
it). Each field takes ``*``, values, names (``JAN``, ``MON-FRI``), ranges, steps
and lists; day-of-month also takes ``L`` (last day) and day-of-week ``d#n``
(n-th weekday). Aliases: ``@hourly @daily @midnight @weekly @monthly @yearly
@annually``; ``@every 15m`` (units s, m, h, d) repeats at a fixed interval counted
from the Unix epoch, so ``@every 15m`` fires at :00, :15, :30 and :45 UTC;
``@once`` fires a single time.

When day-of-month and day-of-week are both restricted, a day matches if *either*
does, as in classic cron (``0 0 13 * FRI`` fires on every 13th and every Friday).

Daylight saving time (the rule Hangfire's users rely on):

* a fire time that does not exist on the spring-forward day fires once, at the
  first instant after the gap (``30 2 * * *`` fires at 03:00 in Berlin on
  2026-03-29), and never twice when that instant is itself a fire time;
* on the fall-back day an expression whose second, minute and hour fields are all
  fixed values fires once, in the first occurrence of the repeated hour; one with
  ``*``, a range or a step in any of those fields fires in both occurrences (an
  hourly job fires every real hour).

Preview and scheduler both call :func:`fires`, so the preview is what beat fires.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from app.errors import InvalidDuration, InvalidSchedule

ALIASES: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
ONCE: Final = "@once"
MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
#: (name, lowest, highest, names whose index + offset is the value)
FIELDS: Final = (
    ("second", 0, 59, (), 0),
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day-of-month", 1, 31, (), 0),
    ("month", 1, 12, MONTHS, 1),
    ("day-of-week", 0, 7, DAYS, 0),
)
#: A duration's unit letters and their names (``timedelta``'s keywords, which are
#: also django-celery-beat's interval periods).
PERIODS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
#: A duration: a whole number and a unit letter, nothing between or around them.
DURATION: Final = re.compile(r"([0-9]+)([smhd])", re.IGNORECASE)
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: A valid expression fires within this many years (29 February: eight at most).
NEVER_YEARS: Final = 9


@dataclass(frozen=True)
class Cron:
    """A parsed expression: ``kind`` is ``cron``, ``every`` or ``once``."""

    expression: str
    kind: str
    #: Six fields, seconds first (``cron`` only).
    fields: tuple[str, ...] = ()
    #: The interval (``every`` only).
    every: timedelta | None = None

    @property
    def canonical(self) -> str:
        """The expression as the beat tables store it (aliases spelled out)."""
        if self.kind != "cron":
            return self.expression
        return " ".join(self.fields[1:] if self.fields[0] == "0" else self.fields)

    @property
    def fixed_time(self) -> bool:
        """True when second, minute and hour are fixed values (fires once on fall-back)."""
        return all(not re.search(r"[*\-/]", field) for field in self.fields[:3])


def zone(name: str) -> ZoneInfo:
    """The time zone called ``name``; :class:`InvalidSchedule` naming it if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            name, f"time zone {name!r} is unknown (use an IANA name such as 'Europe/Berlin')"
        ) from None


def parse(expression: str) -> Cron:
    """Parse ``expression``; :class:`InvalidSchedule` naming the field and the reason."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidSchedule(expression, "empty expression")
    text = original = " ".join(expression.split())
    lowered = text.lower()
    if lowered == ONCE:
        return Cron(ONCE, "once")
    if lowered.startswith("@every"):
        return Cron(text, "every", every=_interval(text))
    if lowered.startswith("@"):
        if lowered not in ALIASES:
            known = ", ".join([*ALIASES, ONCE, "@every <n><s|m|h|d>"])
            raise InvalidSchedule(text, f"unknown alias {text!r}; known: {known}")
        text = ALIASES[lowered]
    parts = text.split(" ")
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise InvalidSchedule(
            expression,
            f"{len(parts)} fields; expected 5 (minute hour day-of-month month day-of-week) "
            "or 6 (second first)",
        )
    for part, spec in zip(parts, FIELDS, strict=True):
        _check_field(expression, part.upper(), *spec)
    return Cron(original, "cron", tuple(parts))


def validate(expression: str, tz: str = "UTC", *, now: datetime | None = None) -> Cron:
    """Parse ``expression`` and make sure it fires at all in ``tz`` (e.g. not ``0 0 30 2 *``)."""
    cron = parse(expression)
    tzinfo = zone(tz)
    if cron.kind == "cron":
        start = (now or datetime.now(UTC)).astimezone(tzinfo).replace(tzinfo=None)
        try:
            _croniter(cron, start).get_next(datetime)
        except CroniterBadDateError:
            raise InvalidSchedule(
                expression, f"it can never fire (no matching date within {NEVER_YEARS} years)"
            ) from None
    return cron


def next_fire_times(
    expression: str, tz: str = "UTC", n: int = 10, *, after: datetime | None = None
) -> list[datetime]:
    """The next ``n`` fire times after ``after`` (default now), in ``tz``: the preview."""
    cron = validate(expression, tz)
    tzinfo = zone(tz)
    start = after or datetime.now(UTC)
    out: list[datetime] = []
    for instant in fires(cron, tzinfo, start):
        if len(out) >= n:
            break
        out.append(instant.astimezone(tzinfo))
    return out


def fires(cron: Cron, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants (UTC) strictly after ``after``, in order, by the DST rule above."""
    if cron.kind == "once":
        return
    if cron.kind == "every":
        assert cron.every is not None
        step = cron.every
        k = (after - EPOCH) // step + 1
        while True:
            yield EPOCH + k * step
            k += 1
    local = after.astimezone(tz)
    naive = local.replace(tzinfo=None)
    if _ambiguous(naive, tz):
        # Inside a repeated hour, fires of the second copy may have earlier wall times.
        naive -= timedelta(hours=3)
    iterator = _croniter(cron, naive)
    pending: list[datetime] = []
    emitted: datetime | None = None
    while True:
        try:
            candidate = iterator.get_next(datetime)
        except CroniterBadDateError:
            break
        instants = _instants(candidate, tz, cron.fixed_time)
        # Instants of later wall times are never earlier than this one's first.
        floor = instants[0]
        while pending and pending[0] < floor:
            instant = heapq.heappop(pending)
            if instant != emitted:
                emitted = instant
                yield instant
        for instant in instants:
            if instant > after:
                heapq.heappush(pending, instant)
    while pending:
        instant = heapq.heappop(pending)
        if instant != emitted:
            emitted = instant
            yield instant


def _instants(naive: datetime, tz: ZoneInfo, fixed: bool) -> list[datetime]:
    """The instants (UTC) at which wall time ``naive`` fires: none skipped, by the DST rule."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    a, b = first.astimezone(UTC), second.astimezone(UTC)
    if a == b:
        return [a]
    if a.astimezone(tz).replace(tzinfo=None) != naive:
        return [_gap_end(min(a, b), max(a, b), tz)]
    return [a] if fixed else [a, b]


def _ambiguous(naive: datetime, tz: ZoneInfo) -> bool:
    return (
        naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()
    )


def _gap_end(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clocks jump (the first instant after a gap), between ``low`` and ``high``."""
    before = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _croniter(cron: Cron, start: datetime) -> croniter:
    return croniter(
        " ".join(cron.fields),
        start,
        second_at_beginning=True,
        day_or=True,
        max_years_between_matches=NEVER_YEARS,
    )


def split_duration(text: str) -> tuple[int, str]:
    """``15m`` as ``(15, "m")``; :class:`InvalidDuration` naming ``text`` otherwise."""
    match = DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidDuration(text, "use a whole number and s, m, h or d (e.g. 15m)")
    return int(match.group(1)), match.group(2).lower()


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h`` or ``1d`` as a timedelta; :class:`InvalidDuration` otherwise."""
    count, unit = split_duration(text)
    try:
        return timedelta(**{PERIODS[unit]: count})
    except OverflowError:
        raise InvalidDuration(text, "it is longer than any date can be") from None


def _interval(text: str) -> timedelta:
    head, _, duration = text.partition(" ")
    try:
        every = parse_duration(duration) if head.lower() == "@every" else None
    except InvalidDuration:
        every = None
    if every is None:
        raise InvalidSchedule(
            text, "write intervals as '@every <n><unit>', unit s, m, h or d (e.g. '@every 15m')"
        )
    if every < timedelta(seconds=1):
        raise InvalidSchedule(text, "an interval must be at least one second")
    return every


def _check_field(
    expression: str, field: str, name: str, low: int, high: int, names: tuple[str, ...], offset: int
) -> None:
    def value(token: str) -> int:
        if token.isdigit():
            number = int(token)
        elif token in names:
            number = names.index(token) + offset
        else:
            hint = f" or a name ({names[0]}-{names[-1]})" if names else ""
            raise InvalidSchedule(expression, f"{name} {token!r} is not a number{hint}")
        if not low <= number <= high:
            raise InvalidSchedule(expression, f"{name} {number} out of range {low}-{high}")
        return number

    for item in field.split(","):
        if not item:
            raise InvalidSchedule(expression, f"{name} has an empty list item in {field!r}")
        base, _, step = item.partition("/")
        if "/" in item:
            if not step.isdigit():
                raise InvalidSchedule(expression, f"{name} step {step!r} is not a number")
            if int(step) < 1:
                raise InvalidSchedule(expression, f"{name} step {step} must be at least 1")
            if int(step) > high - low + 1:
                raise InvalidSchedule(
                    expression, f"{name} step {step} exceeds the range {low}-{high}"
                )
        if base in ("*", "?") or (name == "day-of-month" and base == "L"):
            continue
        if name == "day-of-week" and "#" in base:
            day, _, nth = base.partition("#")
            value(day)
            if not (nth.isdigit() and 1 <= int(nth) <= 5):
                raise InvalidSchedule(expression, f"day-of-week {base!r}: the n in d#n must be 1-5")
            continue
        start, dash, end = base.partition("-")
        first = value(start)
        if dash:
            last = value(end)
            if last < first:
                raise InvalidSchedule(expression, f"{name} range {start}-{end} runs backwards")


def describe_error(exc: Exception) -> str:
    """A one-line reason for a schedule that cannot be used (croniter's own errors too)."""
    if isinstance(exc, InvalidSchedule):
        return str(exc)
    if isinstance(exc, CroniterError):
        return f"invalid cron expression: {exc}"
    return f"{type(exc).__name__}: {exc}"
