"""ScheduleService: every write to the schedules goes through here (CLI, API, console, sync).

Each write validates the whole definition first (cron and time zone by
:mod:`beat.cron`, the task and its payload by :class:`~app.jobs.service.JobService`,
the policies) and stores nothing when any part is wrong. Edits record who made
them; an edit of the expression moves the schedule's cursor to the edit time, so
it neither swallows the next run nor fires the slots it skipped.
"""

from __future__ import annotations

import builtins
import json
import os
from datetime import UTC, datetime
from typing import Any

from app.errors import ConveyorError
from beat import cron
from beat.defaults import DEFAULT_SCHEDULES, Recurring, digest
from config.settings import get_settings

MISFIRE = ("fire_once", "skip", "catch_up")
OVERLAP = ("skip", "queue_one", "allow")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ScheduleNotFound(ConveyorError, LookupError):
    """No schedule has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}")


class InvalidScheduleField(ConveyorError, ValueError):
    """A schedule field other than the cron expression is wrong; names it."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}")


def ensure_django() -> None:
    """Set Django up once (the schedule tables are Django models)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


class ScheduleService:
    """Create, edit, enable, disable, delete, preview and trigger recurring schedules."""

    def __init__(self) -> None:
        ensure_django()

    # reads -------------------------------------------------------------------

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every schedule, by name."""
        from django_celery_beat.models import PeriodicTask

        tasks = PeriodicTask.objects.select_related("crontab", "interval", "clocked", "conveyor")
        return [self._describe(task) for task in tasks.order_by("name")]

    def get(self, name: str) -> dict[str, Any]:
        """One schedule with its next ten fire times and its last fires."""
        task = self._task(name)
        info = self._describe(task)
        info["next_fires"] = self.preview(name, 10) if task.enabled else []
        info["history"] = self.history(name, 10)
        return info

    def preview(self, name: str, n: int = 10) -> builtins.list[datetime]:
        """The next ``n`` fire times of a schedule, in its time zone: what beat will fire."""
        info = self._describe(self._task(name))
        return cron.next_fire_times(info["cron"], info["timezone"], n)

    def history(self, name: str, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """The latest fires of a schedule, newest first."""
        from beat.models import ScheduleFire

        rows = ScheduleFire.objects.filter(schedule_name=name).order_by("-fire_time")[:limit]
        return [
            {
                "fire_time": f.fire_time,
                "fired_at": f.fired_at,
                "outcome": f.outcome,
                "job_id": f.job_id,
                "beat": f.beat,
                "detail": f.detail,
            }
            for f in rows
        ]

    def leader(self) -> dict[str, Any] | None:
        """The beat holding the lease now, if any."""
        from beat.models import BeatLease

        lease = BeatLease.objects.filter(name="beat", expires_at__gt=datetime.now(UTC)).first()
        if lease is None:
            return None
        return {
            "holder": lease.holder,
            "since": lease.acquired_at,
            "renewed_at": lease.renewed_at,
            "expires_at": lease.expires_at,
        }

    # writes ------------------------------------------------------------------

    def create(
        self,
        name: str,
        task: str,
        expression: str,
        *,
        timezone: str | None = None,
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        enabled: bool = True,
        misfire: str = "fire_once",
        overlap: str = "skip",
        catch_up_limit: int = 10,
        description: str = "",
        actor: str = "operator",
        managed_by: str = "operator",
        synced_hash: str = "",
    ) -> dict[str, Any]:
        """Create a schedule; every field is checked before anything is stored."""
        from django.core.exceptions import ValidationError
        from django.db import IntegrityError, transaction
        from django_celery_beat.models import PeriodicTask

        from beat.models import ScheduleOptions

        if not name or not name.strip():
            raise InvalidScheduleField("name", "a schedule needs a name")
        tz = timezone or get_settings().timezone
        parsed, kwargs = self._check(task, expression, tz, kwargs, misfire, overlap, catch_up_limit)
        now = datetime.now(UTC)
        try:
            with transaction.atomic():
                periodic = PeriodicTask(
                    name=name,
                    task=task,
                    kwargs=json.dumps(kwargs),
                    queue=queue or None,
                    enabled=enabled,
                    description=description,
                )
                second = self._attach(periodic, parsed, tz, now)
                periodic.save()
                ScheduleOptions.objects.create(
                    periodic_task=periodic,
                    second=second,
                    misfire_policy=misfire,
                    overlap_policy=overlap,
                    catch_up_limit=catch_up_limit,
                    managed_by=managed_by,
                    synced_hash=synced_hash,
                    edited_by=actor,
                    edited_at=now,
                    cursor=now,
                    seen_expression=f"{expression_of_task(periodic, second)}|{tz}",
                )
        except (IntegrityError, ValidationError) as exc:
            if PeriodicTask.objects.filter(name=name).exists():
                raise InvalidScheduleField("name", f"a schedule named {name!r} exists") from None
            raise InvalidScheduleField("schedule", str(exc)) from None
        return self._describe(self._task(name))

    def update(self, name: str, *, actor: str = "operator", **changes: Any) -> dict[str, Any]:
        """Change some fields (cron, timezone, kwargs, queue, enabled, misfire, overlap,
        catch_up_limit, description, task); all are checked before anything is stored."""
        from django.db import transaction

        known = {
            "cron", "timezone", "kwargs", "queue", "enabled", "misfire", "overlap",
            "catch_up_limit", "description", "task",
        }  # fmt: skip
        unknown = set(changes) - known
        if unknown:
            raise InvalidScheduleField(
                sorted(unknown)[0], f"not a schedule field; known: {sorted(known)}"
            )
        periodic = self._task(name)
        current = self._describe(periodic)
        merged = {**current, **{k: v for k, v in changes.items() if v is not None}}
        parsed, kwargs = self._check(
            merged["task"],
            merged["cron"],
            merged["timezone"],
            merged["kwargs"],
            merged["misfire"],
            merged["overlap"],
            merged["catch_up_limit"],
        )
        now = datetime.now(UTC)
        with transaction.atomic():
            options = self._options(periodic)
            moved = (merged["cron"], merged["timezone"]) != (current["cron"], current["timezone"])
            if moved:
                options.second = self._attach(periodic, parsed, merged["timezone"], now)
                options.cursor = now
                options.seen_expression = (
                    f"{expression_of_task(periodic, options.second)}|{merged['timezone']}"
                )
            periodic.task = merged["task"]
            periodic.kwargs = json.dumps(kwargs)
            periodic.queue = merged["queue"] or None
            periodic.enabled = bool(merged["enabled"])
            periodic.description = merged["description"]
            periodic.save()
            options.misfire_policy = merged["misfire"]
            options.overlap_policy = merged["overlap"]
            options.catch_up_limit = merged["catch_up_limit"]
            options.edited_by, options.edited_at = actor, now
            if changes.get("enabled"):
                options.error = ""
            options.save()
        return self._describe(self._task(name))

    def enable(self, name: str, actor: str = "operator") -> dict[str, Any]:
        """Enable a schedule (missed fires follow its misfire policy)."""
        return self.update(name, enabled=True, actor=actor)

    def disable(self, name: str, actor: str = "operator") -> dict[str, Any]:
        """Disable a schedule; beat stops firing it within a reload."""
        return self.update(name, enabled=False, actor=actor)

    def delete(self, name: str, actor: str = "operator") -> None:
        """Delete a schedule (its fire records stay, as history)."""
        self._task(name).delete()

    def trigger(self, name: str, actor: str = "operator") -> dict[str, Any]:
        """Run a schedule now (its overlap policy applies); the fire record says what happened."""
        from app.celery import app
        from app.db import engine
        from app.jobs.releaser import Releaser
        from beat.scheduler import Firing, build_plan, load_row

        periodic = self._task(name)
        now = datetime.now(UTC)
        created: list[Any] = []
        with engine().begin() as conn:
            row = load_row(conn, periodic.id)
            plan = build_plan(row, now)
            Firing(app, f"run now by {actor}").fire(
                conn, plan, now, f"run now by {actor}", created, outcome="triggered"
            )
        if created:
            Releaser(app).release_due(created)
        last: dict[str, Any] = self.history(name, 1)[0]
        return last

    # the declarative defaults ------------------------------------------------

    def sync_defaults(
        self, declared: tuple[Recurring, ...] | builtins.list[Recurring] = DEFAULT_SCHEDULES
    ) -> dict[str, str]:
        """Create missing declared schedules, update those whose code changed, keep
        those an operator edited; return what happened to each (errors included)."""
        from django_celery_beat.models import PeriodicTask

        outcome: dict[str, str] = {}
        for item in declared:
            wanted = self._declared(item)
            try:
                existing = PeriodicTask.objects.filter(name=item.name).first()
                if existing is None:
                    self.create(
                        item.name,
                        item.task,
                        item.cron,
                        timezone=wanted["timezone"],
                        kwargs=item.kwargs,
                        queue=item.queue,
                        misfire=item.misfire,
                        overlap=item.overlap,
                        description=item.description,
                        actor="code",
                        managed_by="code",
                        synced_hash=digest(wanted),
                    )
                    outcome[item.name] = "created"
                    continue
                options = self._options(existing)
                stored = digest(self._definition(self._describe(existing)))
                if options.synced_hash and stored != options.synced_hash:
                    outcome[item.name] = f"kept: edited by {options.edited_by or 'someone'}"
                elif stored == digest(wanted) and options.synced_hash == stored:
                    outcome[item.name] = "unchanged"
                else:
                    self.update(
                        item.name,
                        actor="code",
                        task=item.task,
                        cron=item.cron,
                        timezone=wanted["timezone"],
                        kwargs=item.kwargs,
                        queue=item.queue or "",
                        misfire=item.misfire,
                        overlap=item.overlap,
                        enabled=True,
                        description=item.description,
                    )
                    options = self._options(self._task(item.name))
                    options.managed_by, options.synced_hash = "code", digest(wanted)
                    options.save()
                    outcome[item.name] = "updated"
            except (ConveyorError, ValueError) as exc:
                outcome[item.name] = f"error: {exc}"
        return outcome

    # helpers -----------------------------------------------------------------

    def _check(
        self,
        task: str,
        expression: str,
        tz: str,
        kwargs: dict[str, Any] | None,
        misfire: str,
        overlap: str,
        catch_up_limit: int,
    ) -> tuple[cron.Cron, dict[str, Any]]:
        from app.jobs.service import JobService

        parsed = cron.validate(expression, tz)
        if misfire not in MISFIRE:
            raise InvalidScheduleField("misfire", f"{misfire!r} is not one of {', '.join(MISFIRE)}")
        if overlap not in OVERLAP:
            raise InvalidScheduleField("overlap", f"{overlap!r} is not one of {', '.join(OVERLAP)}")
        if not isinstance(catch_up_limit, int) or not 1 <= catch_up_limit <= 1000:
            raise InvalidScheduleField("catch_up_limit", "must be a whole number from 1 to 1000")
        return parsed, JobService().validate(task, kwargs or {})

    @staticmethod
    def _attach(periodic: Any, parsed: cron.Cron, tz: str, now: datetime) -> str:
        """Point ``periodic`` at the schedule row for ``parsed``; return its seconds field."""
        from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule

        periodic.crontab = periodic.interval = periodic.clocked = periodic.solar = None
        periodic.one_off = False
        if parsed.kind == "every":
            assert parsed.every is not None
            count, unit = parsed.expression.split()[1][:-1], parsed.expression.split()[1][-1]
            periodic.interval = _first_or_create(
                IntervalSchedule, every=int(count), period=UNITS[unit.lower()]
            )
            return "0"
        if parsed.kind == "once":
            periodic.clocked = _first_or_create(ClockedSchedule, clocked_time=now)
            periodic.one_off = True
            return "0"
        second, minute, hour, dom, month, dow = parsed.fields
        periodic.crontab = _first_or_create(
            CrontabSchedule,
            minute=minute,
            hour=hour,
            day_of_month=dom,
            month_of_year=month,
            day_of_week=dow,
            timezone=tz,
        )
        return second

    @staticmethod
    def _options(periodic: Any) -> Any:
        from beat.models import ScheduleOptions

        options, _ = ScheduleOptions.objects.get_or_create(periodic_task=periodic)
        return options

    def _task(self, name: str) -> Any:
        from django_celery_beat.models import PeriodicTask

        task = (
            PeriodicTask.objects.select_related("crontab", "interval", "clocked", "conveyor")
            .filter(name=name)
            .first()
        )
        if task is None:
            raise ScheduleNotFound(name)
        return task

    def _describe(self, task: Any) -> dict[str, Any]:
        options = getattr(task, "conveyor", None)
        second = options.second if options is not None else "0"
        expression = expression_of_task(task, second)
        tz = str(task.crontab.timezone) if task.crontab_id else "UTC"
        return {
            "id": task.id,
            "name": task.name,
            "task": task.task,
            "cron": expression,
            "timezone": tz,
            "kwargs": json.loads(task.kwargs or "{}"),
            "queue": task.queue or None,
            "enabled": task.enabled,
            "misfire": options.misfire_policy if options else "fire_once",
            "overlap": options.overlap_policy if options else "skip",
            "catch_up_limit": options.catch_up_limit if options else 10,
            "description": task.description,
            "managed_by": options.managed_by if options else "operator",
            "edited_by": options.edited_by if options else "",
            "edited_at": options.edited_at if options else None,
            "error": options.error if options else "",
            "last_run_at": task.last_run_at,
            "total_run_count": task.total_run_count,
        }

    @staticmethod
    def _definition(info: dict[str, Any]) -> dict[str, Any]:
        keys = ("task", "cron", "timezone", "kwargs", "queue", "misfire", "overlap", "enabled")
        return {key: info[key] for key in keys}

    def _declared(self, item: Recurring) -> dict[str, Any]:
        from app.jobs.service import JobService

        try:
            kwargs = JobService().validate(item.task, item.kwargs)
        except ConveyorError:
            kwargs = item.kwargs
        return {
            "task": item.task,
            "cron": cron.parse(item.cron).canonical if _parses(item.cron) else item.cron,
            "timezone": item.timezone or get_settings().timezone,
            "kwargs": kwargs,
            "queue": item.queue,
            "misfire": item.misfire,
            "overlap": item.overlap,
            "enabled": True,
        }


def _first_or_create(model: Any, **fields: Any) -> Any:
    """A shared schedule row with these fields (rows written by SQL may repeat)."""
    return model.objects.filter(**fields).order_by("id").first() or model.objects.create(**fields)


def _parses(expression: str) -> bool:
    try:
        cron.parse(expression)
    except ConveyorError:
        return False
    return True


def expression_of_task(task: Any, second: str = "0") -> str:
    """The cron expression a ``PeriodicTask`` stands for (as beat reads it)."""
    if task.crontab_id:
        c = task.crontab
        fields = [c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week]
        fields = [str(f).strip() for f in fields]
        return " ".join(fields if second == "0" else [second, *fields])
    if task.interval_id:
        unit = {v: k for k, v in UNITS.items()}.get(task.interval.period, "s")
        return f"@every {task.interval.every}{unit}"
    if task.clocked_id:
        return cron.ONCE
    return ""
