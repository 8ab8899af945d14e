"""What beat decides, as pure functions of a schedule and a clock: no database, no broker.

A :class:`Plan` is one enabled schedule with its cursor (the last fire time
handled). Fires after the cursor are due (:meth:`Plan.due`); of those, the ones
later than the misfire grace, or that came while beat was not firing the schedule,
are misfires (:func:`split_misfires`), and the schedule's misfire policy turns them
into runs (:func:`select_runs`). Fire times come from :func:`app.schedule.fires`,
the same code as the preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from app.schedule import Cron, fires

#: Fires of one schedule examined in one pass (a per-second schedule down for hours).
MAX_DUE = 20_000


@dataclass
class Plan:
    """One enabled schedule as beat fires it."""

    id: int
    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None
    expression: str
    tz: ZoneInfo
    cron: Cron
    misfire: str
    catch_up_limit: int
    overlap: str
    one_off: bool
    start_time: datetime | None
    expires: datetime | None
    cursor: datetime
    #: The single instant of a clocked or ``@once`` schedule.
    at: datetime | None = None
    next_fire: datetime | None = None
    #: Set when beat (re)started firing this plan: fires up to here came while beat
    #: was down or the schedule disabled, so they are misfires however recent.
    appeared_after: datetime | None = None
    #: Fire once more when the cluster's beats start (once per leader epoch).
    run_on_startup: bool = False

    def compute_next(self) -> None:
        """The first fire after the cursor (None: never again)."""
        self.next_fire = None
        if self.at is not None:
            self.next_fire = self.at if self.at > self.cursor else None
            return
        for instant in fires(self.cron, self.tz, self.cursor):
            if self.start_time is not None and instant < self.start_time:
                continue
            self.next_fire = instant
            return

    def due(self, now: datetime) -> list[datetime]:
        """Fire times in (cursor, now], oldest first (the latest ``MAX_DUE`` at most)."""
        if self.at is not None:
            return [self.at] if self.cursor < self.at <= now else []
        start = self.cursor
        if self.start_time is not None and self.start_time > start:
            start = self.start_time - timedelta(microseconds=1)
        out: list[datetime] = []
        for instant in fires(self.cron, self.tz, start):
            if instant > now:
                break
            out.append(instant)
            if len(out) >= MAX_DUE:
                # Down for ages on a fine-grained schedule: only recent fires matter.
                return [*out[:1], *self._recent(now)]
        return out

    def lag_s(self, now: datetime) -> float:
        """Seconds the next fire has waited for beat at ``now`` (0: not due yet, or never)."""
        due = self.next_fire
        if due is None or due >= now or (self.expires is not None and due > self.expires):
            return 0.0
        return (now - due).total_seconds()

    def _recent(self, now: datetime) -> list[datetime]:
        out = []
        for instant in fires(self.cron, self.tz, now - timedelta(hours=1)):
            if instant > now:
                break
            out.append(instant)
        return out


class Run(NamedTuple):
    """One fire beat acts on: a job, or (``missed``) only the record of a skipped misfire."""

    fire_time: datetime
    #: Why this run is not a plain on-time fire (empty when it is).
    detail: str = ""
    #: Dropped by the misfire policy ``skip``: recorded as missed, no job.
    missed: bool = False


def split_misfires(
    due: list[datetime], now: datetime, grace: timedelta, appeared_after: datetime | None
) -> tuple[list[datetime], list[datetime]]:
    """``due`` as (missed, on time): late by more than ``grace``, or at or before
    ``appeared_after`` (when beat was not firing the schedule), is missed."""
    missed = [
        f for f in due if now - f > grace or (appeared_after is not None and f <= appeared_after)
    ]
    on_time = [f for f in due if f not in missed]
    return missed, on_time


def select_runs(
    due: list[datetime],
    now: datetime,
    *,
    grace: timedelta,
    misfire: str,
    catch_up_limit: int,
    appeared_after: datetime | None = None,
    expires: datetime | None = None,
) -> list[Run]:
    """The runs for the fires ``due`` at ``now``, by the misfire policy, oldest first.

    ``catch_up`` runs the latest ``catch_up_limit`` missed fires, ``fire_once`` the
    latest one, ``skip`` none (its latest is recorded as missed); every on-time fire
    runs. Fires after ``expires`` are dropped.
    """
    missed, on_time = split_misfires(due, now, grace, appeared_after)
    runs: list[Run] = []
    if missed:
        note = f"{len(missed)} fire(s) missed since {missed[0].isoformat()}"
        if misfire == "catch_up":
            runs += [Run(f, f"catch-up: {note}") for f in missed[-catch_up_limit:]]
        elif misfire == "fire_once":
            runs.append(Run(missed[-1], f"misfire, one run now: {note}"))
        else:
            runs.append(Run(missed[-1], f"skipped by misfire policy: {note}", missed=True))
    runs += [Run(f) for f in on_time]
    if expires is not None:
        runs = [run for run in runs if run.fire_time <= expires]
    return runs
