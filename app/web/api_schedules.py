"""``/schedules``, ``/cron/preview`` and ``/triggers``: recurring jobs, edited and run now.

Every write goes through :class:`beat.service.ScheduleService`, which checks the
whole definition before storing anything; the API checks the cron expression and
the time zone first only to name the field at fault.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.params import functions as param

from app import schedule
from app.errors import ConveyorError, ScheduleNotFound
from app.jobs.service import JobService
from app.web import audit
from app.web.api_auth import needs
from app.web.api_errors import ApiError, fields
from app.web.api_schemas import (
    PreviewOut,
    ScheduleDetail,
    ScheduleIn,
    ScheduleOut,
    SchedulePatch,
    Text,
    TriggerOut,
    errors,
)
from beat.service import ScheduleService
from config.settings import get_settings

router = Router(tags=["schedules"])

#: Most fire times a preview lists.
MAX_PREVIEW = 100


def schedule_id_param() -> Any:
    """The ``{schedule_id}`` path parameter (a ``PeriodicTask`` id)."""
    return param.Path(..., ge=1, le=2**31 - 1, description="the schedule's id")


class PreviewQuery(Schema):
    """``?n=`` of a preview."""

    n: int = Field(10, ge=1, le=MAX_PREVIEW, description="how many fire times")


class CronQuery(PreviewQuery):
    """An expression to preview, and its time zone."""

    expr: Text = Field(max_length=200, description="cron expression, alias or @every")
    tz: Text | None = Field(None, max_length=63, description="IANA time zone; default setting")


class TriggerQuery(Schema):
    """When a named trigger runs its job."""

    delay_minutes: int | None = Field(
        None, ge=1, le=7 * 24 * 60, description="run once this many minutes from now"
    )


def name_of(schedule_id: int) -> str:
    """The name of the schedule with this id; 404 naming it otherwise."""
    from django_celery_beat.models import PeriodicTask

    name = PeriodicTask.objects.filter(id=schedule_id).values_list("name", flat=True).first()
    if name is None:
        raise ApiError(404, "not_found", f"no schedule with id {schedule_id}", "schedule_id")
    return str(name)


def check_cron(expression: str | None, tz: str | None) -> None:
    """Name the field when the time zone or the expression is unusable."""
    if tz is not None:
        try:
            schedule.zone(tz)
        except ConveyorError as exc:
            raise ApiError(422, "invalid_schedule", str(exc), "timezone") from None
    if expression is not None:
        try:
            schedule.validate(expression, tz or get_settings().timezone)
        except Exception as exc:  # any failure to read an expression is the input's
            raise ApiError(422, "invalid_schedule", schedule.describe_error(exc), "cron") from None


def detail(service: ScheduleService, name: str) -> dict[str, Any]:
    """The schedule with its next fires; none when its stored expression cannot fire."""
    try:
        return service.get(name)
    except ScheduleNotFound:
        raise
    except (ConveyorError, ValueError):  # a row written by SQL that beat disabled
        info = next((item for item in service.list() if item["name"] == name), None)
        if info is None:  # deleted meanwhile
            raise ScheduleNotFound(name) from None
        return {**info, "next_fires": [], "history": service.history(name, 10)}


def _preview(expression: str, tz: str, n: int) -> dict[str, Any]:
    try:
        fires = schedule.next_fire_times(expression, tz, n)
    except Exception as exc:  # a stored or given expression that cannot be read
        raise ApiError(422, "invalid_schedule", schedule.describe_error(exc), "cron") from None
    return {"cron": expression, "timezone": tz, "fires": fires}


@router.get("/schedules", response={200: list[ScheduleOut], **errors()}, **needs("read"))
def list_schedules(request: HttpRequest) -> list[dict[str, Any]]:
    """Every schedule, by name."""
    return ScheduleService().list()


@router.post("/schedules", response={201: ScheduleDetail, **errors(409)}, **needs("write"))
def create_schedule(request: HttpRequest, body: ScheduleIn) -> tuple[int, dict[str, Any]]:
    """Create a schedule; every field is checked before anything is stored."""
    from django_celery_beat.models import PeriodicTask

    if PeriodicTask.objects.filter(name=body.name).exists():
        message = f"a schedule named {body.name!r} exists"
        raise ApiError(409, "already_exists", message, "name")
    check_cron(body.cron, body.timezone)
    service = ScheduleService()
    with fields("kwargs", "cron"):
        service.create(
            body.name,
            body.task,
            body.cron,
            timezone=body.timezone,
            kwargs=body.kwargs,
            queue=body.queue,
            enabled=body.enabled,
            misfire=body.misfire,
            overlap=body.overlap,
            catch_up_limit=body.catch_up_limit,
            description=body.description,
            actor=audit.actor_of(request),
        )
    created = detail(service, body.name)
    audit.record(request, "schedule.create", f"schedule:{body.name}", None, _plain(created))
    return 201, created


@router.get(
    "/schedules/{schedule_id}", response={200: ScheduleDetail, **errors(404)}, **needs("read")
)
def get_schedule(request: HttpRequest, schedule_id: int = schedule_id_param()) -> dict[str, Any]:
    """One schedule with its next ten fire times and its latest fires."""
    return detail(ScheduleService(), name_of(schedule_id))


@router.patch(
    "/schedules/{schedule_id}", response={200: ScheduleDetail, **errors(404)}, **needs("write")
)
def update_schedule(
    request: HttpRequest, body: SchedulePatch, schedule_id: int = schedule_id_param()
) -> dict[str, Any]:
    """Change some fields; an edit of the expression applies from now on."""
    name = name_of(schedule_id)
    service = ScheduleService()
    before = detail(service, name)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    tz = changes.get("timezone")
    if "cron" in changes or tz is not None:
        check_cron(changes.get("cron", before["cron"]), tz or before["timezone"])
    with fields("kwargs", "cron"):
        service.update(name, actor=audit.actor_of(request), **changes)
    after = detail(service, name)
    action = "schedule.update"
    if set(changes) == {"enabled"}:
        action = "schedule.enable" if changes["enabled"] else "schedule.disable"
    audit.record(request, action, f"schedule:{name}", _plain(before), _plain(after))
    return after


@router.delete("/schedules/{schedule_id}", response={204: None, **errors(404)}, **needs("write"))
def delete_schedule(
    request: HttpRequest, schedule_id: int = schedule_id_param()
) -> tuple[int, None]:
    """Delete a schedule (its fire records stay, as history)."""
    name = name_of(schedule_id)
    service = ScheduleService()
    before = detail(service, name)
    with fields("kwargs", "cron"):
        service.delete(name, actor=audit.actor_of(request))
    audit.record(request, "schedule.delete", f"schedule:{name}", _plain(before), None)
    return 204, None


@router.post(
    "/schedules/{schedule_id}/trigger",
    response={200: TriggerOut, **errors(404, 503)},
    **needs("write"),
)
def trigger_schedule(
    request: HttpRequest, schedule_id: int = schedule_id_param()
) -> dict[str, Any]:
    """Run a schedule now (its overlap policy applies)."""
    return _trigger_now(request, name_of(schedule_id))


@router.get(
    "/schedules/{schedule_id}/preview", response={200: PreviewOut, **errors(404)}, **needs("read")
)
def preview_schedule(
    request: HttpRequest,
    query: Query[PreviewQuery],
    schedule_id: int = schedule_id_param(),
) -> dict[str, Any]:
    """The next ``n`` fire times, in the schedule's time zone: what beat will fire."""
    info = detail(ScheduleService(), name_of(schedule_id))
    return _preview(info["cron"], info["timezone"], query.n)


@router.get("/cron/preview", response={200: PreviewOut, **errors()}, **needs("read"))
def preview_cron(request: HttpRequest, query: Query[CronQuery]) -> dict[str, Any]:
    """The next ``n`` fire times of any expression, DST rule included."""
    zone = query.tz or get_settings().timezone
    check_cron(None, zone)
    return _preview(query.expr, zone, query.n)


@router.post(
    "/triggers/{path:name}", response={200: TriggerOut, **errors(404, 503)}, **needs("write")
)
def trigger_named(
    request: HttpRequest,
    name: Text,
    query: Query[TriggerQuery],
) -> dict[str, Any]:
    """Run the recurring job ``name`` now, or once after ``delay_minutes``."""
    delay_minutes = query.delay_minutes
    if delay_minutes is None:
        return _trigger_now(request, name)
    service = ScheduleService()
    with fields("kwargs", "cron"):
        info = detail(service, name)
    actor = audit.actor_of(request)
    with fields("kwargs", "cron"):
        job_id = JobService().enqueue(
            info["task"],
            info["kwargs"] if isinstance(info["kwargs"], dict) else {},
            schedule=timedelta(minutes=delay_minutes),
            queue=info["queue"],
            metadata={"schedule": name, "triggered_by": actor},
        )
    due = JobService().get(job_id)["due_at"]
    out = {
        "schedule": name,
        "outcome": "scheduled",
        "job_id": job_id,
        "due_at": due,
        "detail": f"runs once in {delay_minutes} min, by {actor}",
    }
    audit.record(request, "schedule.trigger", f"schedule:{name}", None, out)
    return out


def _trigger_now(request: HttpRequest, name: str) -> dict[str, Any]:
    with fields("kwargs", "cron"):
        fire = ScheduleService().trigger(name, actor=audit.actor_of(request))
    out = {
        "schedule": name,
        "outcome": fire["outcome"],
        "job_id": fire["job_id"],
        "due_at": fire["fire_time"],
        "detail": fire["detail"],
    }
    audit.record(request, "schedule.trigger", f"schedule:{name}", None, out)
    return out


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """A schedule as the audit keeps it (its definition, not its history)."""
    keys = (
        *("id", "name", "task", "cron", "timezone", "kwargs", "queue", "enabled"),
        *("misfire", "overlap", "catch_up_limit", "description"),
    )
    return {key: info.get(key) for key in keys}
