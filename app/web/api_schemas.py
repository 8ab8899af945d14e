"""The API's shared types and error shape, and the job and schedule schemas.

Schemas are the OpenAPI document; the operations' and the admin routes' own
schemas live beside those routes.

Text and JSON inputs are checked for what PostgreSQL cannot store (NUL characters,
unpaired surrogates, NaN, very deep nesting), so such input is a 422 naming the
field, never a database error.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from ninja import Field, Schema
from pydantic import AfterValidator

from beat.service import MISFIRE, OVERLAP
from config.settings import QUEUES

#: Deepest nesting a payload or metadata may have.
MAX_DEPTH = 32

QueueName = Literal["critical", "default", "emails", "reports", "background"]
JobState = Literal[
    "scheduled", "queued", "running", "retrying", "completed", "failed", "cancelled", "dead"
]
Misfire = Literal["fire_once", "skip", "catch_up"]
Overlap = Literal["skip", "queue_one", "allow"]
ScopeName = Literal["read", "write", "admin"]
assert get_args(QueueName) == QUEUES
assert get_args(Misfire) == MISFIRE and get_args(Overlap) == OVERLAP


def plain_text(value: str) -> str:
    """``value`` if PostgreSQL can store it."""
    if "\x00" in value:
        raise ValueError("text may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (unpaired surrogate)") from None
    return value


def plain_json(value: Any, path: str = "", depth: int = 0) -> Any:
    """``value`` if it is JSON that PostgreSQL's ``jsonb`` accepts; the error names the path."""
    where = f" (at {path})" if path else ""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels{where}")
    if isinstance(value, str):
        try:
            plain_text(value)
        except ValueError as exc:
            raise ValueError(f"{exc}{where}") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"numbers must be finite (no NaN or Infinity){where}")
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            try:
                plain_text(key)
            except ValueError as exc:
                raise ValueError(f"key {exc}{where}") from None
            plain_json(item, inner, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            plain_json(item, f"{path}[{index}]" if path else f"[{index}]", depth + 1)
    return value


Text = Annotated[str, AfterValidator(plain_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(plain_json)]


class ErrorBody(Schema):
    """What went wrong."""

    status: int
    code: str = Field(description="machine-readable: unknown_handler, invalid_payload, …")
    message: str
    field: str | None = Field(description="the input at fault, e.g. payload.to or cron")
    details: list[dict[str, Any]] = Field(description="each problem: field, reason")
    known: list[str] | None = Field(None, description="the known handlers (unknown_handler)")
    limit: int | None = Field(None, description="the byte limit (payload_too_large)")
    size: int | None = Field(None, description="the size given (payload_too_large)")


class ErrorOut(Schema):
    """Every 4xx and 5xx body."""

    error: ErrorBody


def errors(*statuses: int) -> dict[int, type[ErrorOut]]:
    """Response declarations for the error statuses of a route (auth and validation always)."""
    return dict.fromkeys(sorted({400, 401, 403, 413, 422, *statuses}), ErrorOut)


# jobs ----------------------------------------------------------------------------------

SCHEDULE_HELP = (
    "When to run: omitted or '@once' now; a delay such as '90s', '15m', '2h', '1d'; "
    "an ISO 8601 time with a zone ('2026-12-01T06:00:00+01:00'); or a cron expression "
    "('0 6 * * MON-FRI', '@daily') or '@every 30s': a recurring job, a schedule named "
    "job_name (required) that beat fires, edited under /schedules."
)


class JobIn(Schema):
    """A job to enqueue."""

    handler: Text = Field(
        min_length=1, max_length=200, description="registered task name, e.g. emails.send"
    )
    payload: JsonObject = Field(default_factory=dict, description="the handler's fields")
    job_name: Text | None = Field(
        None, min_length=1, max_length=200, description="unique among active jobs"
    )
    schedule: Text | None = Field(None, max_length=200, description=SCHEDULE_HELP)
    queue: QueueName | None = Field(None, description="default: the handler's route")
    metadata: JsonObject = Field(default_factory=dict)
    idempotency_key: Text | None = Field(
        None, min_length=1, max_length=200, description="the same key returns the same job"
    )
    notify: list[Text] | None = Field(
        None, max_length=20, description="addresses mailed when the job finishes, however it ends"
    )


class JobCreated(Schema):
    """The job that was enqueued (or that its key or name already named)."""

    id: uuid.UUID
    status: str
    due_at: datetime | None


class JobOut(Schema):
    """One job of the ledger."""

    id: uuid.UUID
    handler: str
    job_name: str | None
    queue: str
    args: list[Any]
    payload: Any
    metadata: Any
    schedule: str | None
    idempotency_key: str | None
    status: str
    status_at: datetime
    attempts: int
    deliveries: int
    last_error: str | None
    traceback: str | None
    worker: str | None
    result: Any
    created_at: datetime
    enqueued_at: datetime | None
    due_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    #: A running job's own report of how far it is (0-100), what it does, and when.
    progress: int | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None
    #: Who is mailed when it finishes (``notify`` at enqueue).
    notify_to: list[str] | None = None


class EventOut(Schema):
    """One state change of a job."""

    from_status: str | None
    to_status: str
    at: datetime
    attempt: int
    worker: str | None
    detail: str | None


class JobDetail(JobOut):
    """A job with its timeline, oldest event first."""

    events: list[EventOut]


class JobPage(Schema):
    """A page of jobs, newest first."""

    items: list[JobOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class JobPatch(Schema):
    """A new due time for a job that waits (status scheduled)."""

    schedule: Text = Field(max_length=200, description=SCHEDULE_HELP)


class BulkFilter(Schema):
    """Which jobs a bulk action takes: all filters apply; at most ``limit`` jobs."""

    status: JobState | None = None
    handler: Text | None = Field(None, max_length=200)
    queue: Text | None = Field(None, max_length=100)
    since: datetime | None = Field(None, description="created at or after")
    until: datetime | None = Field(None, description="created before")
    limit: int = Field(1000, ge=1, le=1000)


class BulkCancel(BulkFilter):
    """A bulk cancel; ``terminate`` also stops running jobs."""

    terminate: bool = False


class Skipped(Schema):
    """A matched job the action did not apply to, and why."""

    id: uuid.UUID
    reason: str


class BulkOut(Schema):
    """What a bulk action did."""

    matched: int
    done: list[uuid.UUID]
    skipped: list[Skipped]


# schedules -----------------------------------------------------------------------------


class ScheduleIn(Schema):
    """A new recurring schedule."""

    name: Text = Field(min_length=1, max_length=200)
    task: Text = Field(max_length=200, description="registered task name")
    cron: Text = Field(max_length=200, description="cron (5 or 6 fields), alias or @every")
    timezone: Text | None = Field(None, max_length=63, description="IANA name; default setting")
    kwargs: JsonObject = Field(default_factory=dict, description="the task's payload")
    queue: QueueName | None = None
    enabled: bool = True
    misfire: Misfire = "fire_once"
    overlap: Overlap = "skip"
    catch_up_limit: int = Field(10, ge=1, le=1000)
    description: Text = Field("", max_length=2000)


class SchedulePatch(Schema):
    """The fields to change; the others stay."""

    task: Text | None = Field(None, max_length=200)
    cron: Text | None = Field(None, max_length=200)
    timezone: Text | None = Field(None, max_length=63)
    kwargs: JsonObject | None = None
    queue: QueueName | Literal[""] | None = Field(None, description="'' for the task's route")
    enabled: bool | None = None
    misfire: Misfire | None = None
    overlap: Overlap | None = None
    catch_up_limit: int | None = Field(None, ge=1, le=1000)
    description: Text | None = Field(None, max_length=2000)


class ScheduleOut(Schema):
    """One schedule."""

    id: int
    name: str
    task: str
    cron: str
    timezone: str
    kwargs: Any
    queue: str | None
    enabled: bool
    misfire: str
    overlap: str
    catch_up_limit: int
    description: str
    managed_by: str
    edited_by: str
    edited_at: datetime | None
    error: str
    last_run_at: datetime | None
    total_run_count: int


class FireOut(Schema):
    """One fire of a schedule."""

    fire_time: datetime
    fired_at: datetime
    outcome: str = Field(description="enqueued, skipped, waiting, missed or triggered")
    job_id: uuid.UUID | None
    beat: str
    detail: str


class ScheduleDetail(ScheduleOut):
    """A schedule with its next ten fire times and its latest fires."""

    next_fires: list[datetime]
    history: list[FireOut]


class PreviewOut(Schema):
    """Fire times, in the schedule's time zone (ISO 8601 with the offset of each)."""

    cron: str
    timezone: str
    fires: list[datetime]


class TriggerOut(Schema):
    """What a trigger did: a run now, or a job due later."""

    schedule: str
    outcome: str
    job_id: uuid.UUID | None
    due_at: datetime | None
    detail: str
