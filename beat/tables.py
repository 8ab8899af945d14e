"""The schedule tables as beat reads and moves them: django-celery-beat's rows joined
with Conveyor's options, turned into :class:`~beat.plan.Plan` objects.

Every statement beat runs on ``django_celery_beat_periodictask`` and
``conveyor_schedule`` is here, named. A row that cannot be scheduled raises,
naming why (:func:`build_plan`); the scheduler disables it with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from app import schedule
from app.jobs.service import JobService
from beat.plan import Plan
from config.settings import get_settings

#: django-celery-beat's interval periods and the duration unit each stands for.
UNIT_OF_PERIOD = {period: unit for unit, period in schedule.PERIODS.items()}

LOAD = text("""
SELECT t.id, t.name, t.task, t.args, t.kwargs, t.queue, t.priority, t.one_off, t.start_time,
       t.expires, t.date_changed, t.solar_id,
       c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, c.timezone AS crontab_tz,
       i.every, i.period, k.clocked_time,
       o.periodic_task_id IS NOT NULL AS has_options, o.second, o.misfire_policy,
       o.catch_up_limit, o.overlap_policy, o.cursor, o.seen_expression,
       coalesce(o.run_on_startup, false) AS run_on_startup
FROM django_celery_beat_periodictask t
LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id
LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id
LEFT JOIN django_celery_beat_clockedschedule k ON k.id = t.clocked_id
LEFT JOIN conveyor_schedule o ON o.periodic_task_id = t.id
WHERE (t.enabled OR :include_disabled) AND (CAST(:only AS integer) IS NULL OR t.id = :only)
ORDER BY t.id
""")
#: Move a schedule's cursor (never back) and note the expression it belongs to.
MOVE_CURSOR = text("""
INSERT INTO conveyor_schedule (periodic_task_id, second, misfire_policy, catch_up_limit,
    overlap_policy, managed_by, synced_hash, edited_by, edited_at, cursor, seen_expression, error)
VALUES (:id, '0', 'fire_once', 10, 'skip', 'operator', '', '', NULL, :cursor, :seen, '')
ON CONFLICT (periodic_task_id) DO UPDATE
SET cursor = greatest(conveyor_schedule.cursor, EXCLUDED.cursor),
    seen_expression = EXCLUDED.seen_expression
""")
DISABLE = text("""
WITH t AS (UPDATE django_celery_beat_periodictask SET enabled = false WHERE id = :id)
INSERT INTO conveyor_schedule (periodic_task_id, second, misfire_policy, catch_up_limit,
    overlap_policy, managed_by, synced_hash, edited_by, edited_at, seen_expression, error)
VALUES (:id, '0', 'fire_once', 10, 'skip', 'operator', '', 'beat', now(), '', :error)
ON CONFLICT (periodic_task_id) DO UPDATE SET error = EXCLUDED.error, edited_by = 'beat',
    edited_at = now()
""")
#: Tell django-celery-beat's own readers (the console) that the tables changed.
BUMP = text("UPDATE django_celery_beat_periodictasks SET last_update = now() WHERE ident = 1")
ADVANCE = text("""
UPDATE conveyor_schedule SET cursor = greatest(cursor, :cursor), error = ''
WHERE periodic_task_id = :id
""")
RAN = text("""
UPDATE django_celery_beat_periodictask
SET last_run_at = now(), total_run_count = total_run_count + :runs,
    enabled = enabled AND NOT :once
WHERE id = :id
""")


def load_rows(conn: Connection) -> Sequence[RowMapping]:
    """The ``LOAD`` rows of every enabled schedule."""
    return conn.execute(LOAD, {"include_disabled": False, "only": None}).mappings().all()


def load_row(conn: Connection, schedule_id: int) -> Any:
    """The ``LOAD`` row of one schedule, enabled or not (None if there is none)."""
    return conn.execute(LOAD, {"include_disabled": True, "only": schedule_id}).mappings().first()


def expression_of(row: Any) -> tuple[str, str]:
    """The cron expression and time zone a schedule row stands for; ValueError if none."""
    if row["solar_id"] is not None:
        raise ValueError("solar schedules are not supported; use a cron expression")
    if row["minute"] is not None:
        second = (row["second"] or "0").strip()
        fields = [
            row["minute"],
            row["hour"],
            row["day_of_month"],
            row["month_of_year"],
            row["day_of_week"],
        ]
        fields = [str(f).strip() for f in fields]
        expression = " ".join(fields if second == "0" else [second, *fields])
        return expression, str(row["crontab_tz"] or get_settings().timezone)
    if row["every"] is not None:
        unit = UNIT_OF_PERIOD.get(row["period"])
        if unit is None:
            raise ValueError(
                f"interval period {row['period']!r} is not supported (use seconds or more)"
            )
        return f"@every {row['every']}{unit}", "UTC"
    if row["clocked_time"] is not None:
        return schedule.ONCE, "UTC"
    raise ValueError("the schedule has no crontab, interval or clocked time")


def seen_key(expression: str, tz: str) -> str:
    """What ``conveyor_schedule.seen_expression`` holds for an expression and its zone."""
    return f"{expression}|{tz}"


def build_plan(row: Any, cursor: datetime) -> Plan:
    """A plan from a ``LOAD`` row; raises naming what makes the row unusable."""
    expression, tz = expression_of(row)
    parsed = schedule.validate(expression, tz)
    args = json.loads(row["args"] or "[]")
    kwargs = json.loads(row["kwargs"] or "{}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("args must be a JSON list and kwargs a JSON object")
    kwargs = JobService().validate(row["task"], kwargs)
    at = None
    if parsed.kind == "once":
        at = row["clocked_time"] or row["start_time"] or cursor + timedelta(microseconds=1)
    plan = Plan(
        id=row["id"],
        name=row["name"],
        task=row["task"],
        args=args,
        kwargs=kwargs,
        queue=row["queue"] or None,
        priority=row["priority"],
        expression=expression,
        tz=schedule.zone(tz),
        cron=parsed,
        misfire=row["misfire_policy"] or "fire_once",
        catch_up_limit=max(1, int(row["catch_up_limit"] or 10)),
        overlap=row["overlap_policy"] or "skip",
        one_off=bool(row["one_off"]) or at is not None,
        start_time=row["start_time"],
        expires=row["expires"],
        cursor=cursor,
        at=at,
        run_on_startup=bool(row["run_on_startup"]),
    )
    plan.compute_next()
    return plan
