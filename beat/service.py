"""ScheduleService: every write to the schedules goes through here (CLI, API, console, sync).

Each write validates the whole definition first (cron and time zone by
:mod:`app.schedule`, the task and its payload by :class:`~app.jobs.service.JobService`,
the policies) and stores nothing when any part is wrong. Edits record who made
them; an edit of the expression moves the schedule's cursor to the edit time, so
it neither swallows the next run nor fires the slots it skipped.
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import django
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from app import schedule
from app.celery import app
from app.db import engine
from app.errors import ConveyorError, InvalidScheduleField, ScheduleNotFound
from app.jobs.releaser import Releaser
from app.jobs.service import JobService
from beat import tables
from beat.defaults import DEFAULT_SCHEDULES, Recurring, digest
from beat.firing import Firing
from beat.lease import NAME as LEASE
from config.settings import get_settings

logger = logging.getLogger(__name__)

MISFIRE = ("fire_once", "skip", "catch_up")
OVERLAP = ("skip", "queue_one", "allow")


def ensure_django() -> None:
    """Set Django up once (the schedule tables are Django models)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
    if not apps.ready:
        django.setup()


@functools.cache
def django_models() -> SimpleNamespace:
    """The Django models of the schedule tables, Django set up first (they can only be
    imported after ``django.setup()``)."""
    ensure_django()
    from django_celery_beat import models as celery_beat

    from beat import models as conveyor

    return SimpleNamespace(
        PeriodicTask=celery_beat.PeriodicTask,
        CrontabSchedule=celery_beat.CrontabSchedule,
        IntervalSchedule=celery_beat.IntervalSchedule,
        ClockedSchedule=celery_beat.ClockedSchedule,
        ScheduleOptions=conveyor.ScheduleOptions,
        ScheduleFire=conveyor.ScheduleFire,
        BeatLease=conveyor.BeatLease,
    )


class ScheduleService:
    """Create, edit, enable, disable, delete, preview and trigger recurring schedules."""

    def __init__(self) -> None:
        self.models = django_models()

    # reads -------------------------------------------------------------------

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every schedule, by name."""
        tasks = self.models.PeriodicTask.objects.select_related(
            "crontab", "interval", "clocked", "conveyor"
        )
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
        return schedule.next_fire_times(info["cron"], info["timezone"], n)

    def history(self, name: str, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """The latest fires of a schedule, newest first."""
        fires = self.models.ScheduleFire.objects.filter(schedule_name=name)
        rows = fires.order_by("-fire_time")[:limit]
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
        live = self.models.BeatLease.objects.filter(expires_at__gt=datetime.now(UTC))
        lease = live.filter(name=LEASE).first()
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
        job_id: uuid.UUID | None = None,
        run_on_startup: bool = False,
        initial_delay_s: float | None = None,
    ) -> dict[str, Any]:
        """Create a schedule; every field is checked before anything is stored.

        ``job_id``: the id of the recurring job this schedule is (``JobService.enqueue``
        with a cron expression), by which ``JobService`` finds it again.
        ``run_on_startup``: also fire once when the cluster's beats start (once per
        start of the cluster, not once per beat or per handover).
        ``initial_delay_s``: fire no earlier than this long from now (django-celery-beat's
        ``start_time``): the first fire is the schedule's first at or after it."""
        if initial_delay_s is not None and not 0 <= initial_delay_s <= 366 * 86400:
            raise InvalidScheduleField("initial_delay_s", "must be from 0 s to a year")
        if not name or not name.strip():
            raise InvalidScheduleField("name", "a schedule needs a name")
        tz = timezone or get_settings().timezone
        parsed, kwargs = self._check(task, expression, tz, kwargs, misfire, overlap, catch_up_limit)
        now = datetime.now(UTC)
        try:
            with transaction.atomic():
                periodic = self.models.PeriodicTask(
                    name=name,
                    task=task,
                    kwargs=json.dumps(kwargs),
                    queue=queue or None,
                    enabled=enabled,
                    description=description,
                    start_time=None
                    if initial_delay_s is None
                    else now + timedelta(seconds=initial_delay_s),
                )
                second = self._attach(periodic, parsed, tz, now)
                periodic.save()
                self.models.ScheduleOptions.objects.create(
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
                    job_id=job_id,
                    run_on_startup=run_on_startup,
                )
        except (IntegrityError, ValidationError) as exc:
            if self.models.PeriodicTask.objects.filter(name=name).exists():
                raise InvalidScheduleField("name", f"a schedule named {name!r} exists") from None
            raise InvalidScheduleField("schedule", str(exc)) from None
        return self._describe(self._task(name))

    def update(self, name: str, *, actor: str = "operator", **changes: Any) -> dict[str, Any]:
        """Change some fields (cron, timezone, kwargs, queue, enabled, misfire, overlap,
        catch_up_limit, description, task, run_on_startup); all are checked before anything
        is stored."""
        known = {
            "cron", "timezone", "kwargs", "queue", "enabled", "misfire", "overlap",
            "catch_up_limit", "description", "task", "run_on_startup",
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
            options.run_on_startup = bool(merged["run_on_startup"])
            options.edited_by, options.edited_at = actor, now
            if changes.get("enabled"):
                options.error = ""
            options.save()
        return self._describe(self._task(name))

    def name_of(self, job_id: uuid.UUID | str) -> str | None:
        """The name of the schedule that is the recurring job ``job_id``, if one is."""
        try:
            wanted = uuid.UUID(str(job_id))
        except ValueError:
            return None
        options = self.models.ScheduleOptions.objects.filter(job_id=wanted).first()
        return None if options is None else str(options.periodic_task.name)

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
        periodic = self._task(name)
        now = datetime.now(UTC)
        created: list[Any] = []
        with engine().begin() as conn:
            row = tables.load_row(conn, periodic.id)
            if row is None:  # deleted since it was looked up (a concurrent DELETE)
                raise ScheduleNotFound(name)
            plan = tables.build_plan(row, now)
            Firing(app, f"run now by {actor}").fire(
                conn, plan, now, f"run now by {actor}", created, outcome="triggered"
            )
        if created:
            Releaser(app).release_due(created)
        last = self.history(name, 1)
        if not last:  # deleted, with its history, since it fired
            raise ScheduleNotFound(name)
        fire: dict[str, Any] = last[0]
        return fire

    # the declarative defaults ------------------------------------------------

    def sync_defaults(
        self, declared: tuple[Recurring, ...] | builtins.list[Recurring] = DEFAULT_SCHEDULES
    ) -> dict[str, str]:
        """Create missing declared schedules, update those whose code changed, keep
        those an operator edited, withdraw the code's schedules ``declared`` no longer
        names (:meth:`_withdraw`); return what happened to each (errors included).

        ``declared`` is the whole declaration, not a part of it. Every change is logged
        and stamped ``edited_by="code"`` on the schedules it leaves."""
        outcome: dict[str, str] = {}
        for item in declared:
            wanted = self._declared(item)
            try:
                existing = self.models.PeriodicTask.objects.filter(name=item.name).first()
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
                definition = self._definition(self._describe(existing))
                stored = digest(definition)
                if options.synced_hash and not as_synced(definition, options.synced_hash):
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
        outcome.update(self._withdraw({item.name for item in declared}))
        for name, what in outcome.items():
            if what.startswith("error"):
                logger.warning("beat: default schedule %r: %s", name, what)
            elif what != "unchanged":
                logger.info("beat: default schedule %r: %s", name, what)
        return outcome

    def _withdraw(self, declared: set[str]) -> dict[str, str]:
        """Withdraw the schedules the code manages but no longer declares. One as the sync
        last wrote it (or as beat disabled it, unable to schedule it) is deleted; its fire
        records stay, as history. One an operator edited is disabled and handed to the
        operators, who may want it back; from then on the sync leaves it alone."""
        outcome: dict[str, str] = {}
        withdrawn = (
            self.models.PeriodicTask.objects.select_related(
                "crontab", "interval", "clocked", "conveyor"
            )
            .filter(conveyor__managed_by="code")
            .exclude(name__in=declared)
            .order_by("name")
        )
        for periodic in withdrawn:
            try:
                options = periodic.conveyor
                stored = self._definition(self._describe(periodic))
                if options.edited_by == "beat":
                    # Beat disabled it (it cannot schedule it: its task is gone, say),
                    # which is no operator's edit.
                    stored["enabled"] = True
                if options.synced_hash and as_synced(stored, options.synced_hash):
                    periodic.delete()
                    outcome[periodic.name] = "deleted: no longer declared"
                    continue
                # An edit by SQL leaves the last actor of the service (or beat) in place.
                editor = options.edited_by
                if editor in ("", "code", "beat"):
                    editor = "someone"
                with transaction.atomic():
                    # No self.update(): it would validate the task, which may be gone.
                    periodic.enabled = False
                    periodic.save()
                    options.managed_by = "operator"
                    options.edited_by, options.edited_at = "code", datetime.now(UTC)
                    options.error = (
                        f"no longer declared in beat/defaults.py; disabled, and kept "
                        f"because {editor} edited it"
                    )
                    options.save()
                outcome[periodic.name] = f"disabled: no longer declared, kept: edited by {editor}"
            except (ConveyorError, ValueError, ValidationError) as exc:
                outcome[periodic.name] = f"error: {exc}"
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
    ) -> tuple[schedule.Cron, dict[str, Any]]:
        parsed = schedule.validate(expression, tz)
        if misfire not in MISFIRE:
            raise InvalidScheduleField("misfire", f"{misfire!r} is not one of {', '.join(MISFIRE)}")
        if overlap not in OVERLAP:
            raise InvalidScheduleField("overlap", f"{overlap!r} is not one of {', '.join(OVERLAP)}")
        if not isinstance(catch_up_limit, int) or not 1 <= catch_up_limit <= 1000:
            raise InvalidScheduleField("catch_up_limit", "must be a whole number from 1 to 1000")
        return parsed, JobService().validate(task, kwargs or {})

    def _attach(self, periodic: Any, parsed: schedule.Cron, tz: str, now: datetime) -> str:
        """Point ``periodic`` at the schedule row for ``parsed``; return its seconds field."""
        periodic.crontab = periodic.interval = periodic.clocked = periodic.solar = None
        periodic.one_off = False
        if parsed.kind == "every":
            count, unit = schedule.split_duration(parsed.expression.split()[1])
            periodic.interval = _first_or_create(
                self.models.IntervalSchedule, every=count, period=schedule.PERIODS[unit]
            )
            return "0"
        if parsed.kind == "once":
            periodic.clocked = _first_or_create(self.models.ClockedSchedule, clocked_time=now)
            periodic.one_off = True
            return "0"
        second, minute, hour, dom, month, dow = parsed.fields
        periodic.crontab = _first_or_create(
            self.models.CrontabSchedule,
            minute=minute,
            hour=hour,
            day_of_month=dom,
            month_of_year=month,
            day_of_week=dow,
            timezone=tz,
        )
        return second

    def _options(self, periodic: Any) -> Any:
        options, _ = self.models.ScheduleOptions.objects.get_or_create(periodic_task=periodic)
        return options

    def _task(self, name: str) -> Any:
        task = (
            self.models.PeriodicTask.objects.select_related(
                "crontab", "interval", "clocked", "conveyor"
            )
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
            "job_id": options.job_id if options else None,
            "run_on_startup": options.run_on_startup if options else False,
            "start_time": task.start_time,
        }

    @staticmethod
    def _definition(info: dict[str, Any]) -> dict[str, Any]:
        return {key: info[key] for key in DEFINITION}

    def _declared(self, item: Recurring) -> dict[str, Any]:
        try:
            kwargs = JobService().validate(item.task, item.kwargs)
        except ConveyorError:
            kwargs = item.kwargs
        return {
            "task": item.task,
            "cron": schedule.parse(item.cron).canonical if _parses(item.cron) else item.cron,
            "timezone": item.timezone or get_settings().timezone,
            "kwargs": kwargs,
            "queue": item.queue,
            "misfire": item.misfire,
            "overlap": item.overlap,
            "enabled": True,
            "description": item.description,
        }


#: What a declared schedule's sync digest covers: what an edit would change.
DEFINITION = (
    "task", "cron", "timezone", "kwargs", "queue", "misfire", "overlap", "enabled", "description",
)  # fmt: skip


def as_synced(definition: dict[str, Any], synced_hash: str) -> bool:
    """True when a schedule's ``definition`` is as the sync last wrote it (``synced_hash``).

    Rows synced before the description was part of the digest match without it: their
    description is the code's, and the next sync brings it up to date."""
    if digest(definition) == synced_hash:
        return True
    return digest({k: v for k, v in definition.items() if k != "description"}) == synced_hash


def _first_or_create(model: Any, **fields: Any) -> Any:
    """A shared schedule row with these fields (rows written by SQL may repeat)."""
    return model.objects.filter(**fields).order_by("id").first() or model.objects.create(**fields)


def _parses(expression: str) -> bool:
    try:
        schedule.parse(expression)
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
        unit = tables.UNIT_OF_PERIOD.get(task.interval.period, "s")
        return f"@every {task.interval.every}{unit}"
    if task.clocked_id:
        return schedule.ONCE
    return ""
