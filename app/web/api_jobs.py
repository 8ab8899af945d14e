"""``/jobs``: enqueue, list, inspect with the timeline, reschedule, cancel and requeue."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.http import HttpRequest
from kombu.utils import json as kombu_json
from ninja import Query, Router
from pydantic import Field

from app.errors import ConveyorError, InvalidDuration, JobNameTaken
from app.jobs.models import JobStatus
from app.jobs.service import CANCELLABLE, REQUEUEABLE, JobService, Schedule
from app.jobs.store import decode_cursor
from app.schedule import describe_error, parse_duration
from app.web import audit
from app.web.api_auth import needs
from app.web.api_errors import ApiError, fields
from app.web.api_schemas import (
    BulkCancel,
    BulkFilter,
    BulkOut,
    JobCreated,
    JobDetail,
    JobIn,
    JobPage,
    JobPatch,
    Text,
    errors,
)

router = Router(tags=["jobs"])

#: Largest encoded metadata a job may carry.
MAX_METADATA_BYTES = 64 * 1024
#: Longest delay a schedule such as ``90s`` may ask for.
MAX_DELAY = timedelta(days=3650)
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
PAST = {"requeue": "requeued", "cancel": "cancelled", "purge": "purged"}
#: States a bulk action takes when no status is given.
BULK_DEFAULT = {
    "requeue": (JobStatus.FAILED, JobStatus.DEAD),
    "cancel": (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING),
    "purge": (JobStatus.DEAD,),
}
#: States each bulk action may take.
BULK_ALLOWED = {"requeue": REQUEUEABLE, "cancel": CANCELLABLE, "purge": {JobStatus.DEAD}}


def parse_schedule(text: str | None) -> Schedule:
    """A job's schedule from its API form; 422 naming ``schedule`` when unusable."""
    if text is None or text.strip() in ("", "@once"):
        return None
    text = text.strip()
    try:
        delay: timedelta | None = parse_duration(text)
    except InvalidDuration:
        delay = None  # not a delay: a time or a cron expression
    if delay is not None:
        if delay > MAX_DELAY:
            message = f"a delay is at most {MAX_DELAY.days} days"
            raise ApiError(422, "invalid_schedule", message, "schedule")
        return delay
    if ISO_DATE.match(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError as exc:
            message = f"{text!r} is not an ISO 8601 time: {exc}"
            raise ApiError(422, "invalid_schedule", message, "schedule") from None
    try:
        JobService.due(text)
    except Exception as exc:  # any failure to read a cron expression is the input's
        raise ApiError(422, "invalid_schedule", describe_error(exc), "schedule") from None
    return text


def job_out(row: dict[str, Any]) -> dict[str, Any]:
    """A ledger row as the API shows it (the stored kwargs are the payload)."""
    stored = row.get("payload") or {}
    return {
        **row,
        "args": list(stored.get("args") or []) if isinstance(stored, dict) else [],
        "payload": stored.get("kwargs", {}) if isinstance(stored, dict) else stored,
    }


def _snapshot(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "attempts", "due_at", "schedule", "worker")
    return {key: job.get(key) for key in keys}


@router.post("/jobs", response={201: JobCreated, **errors(503)}, **needs("write"))
def enqueue(request: HttpRequest, body: JobIn) -> tuple[int, dict[str, Any]]:
    """Enqueue a job by handler name; the payload is checked against the handler's schema."""
    schedule = parse_schedule(body.schedule)
    size = len(kombu_json.dumps(body.metadata).encode())
    if size > MAX_METADATA_BYTES:
        message = f"metadata is {size} bytes encoded, over the limit of {MAX_METADATA_BYTES}"
        raise ApiError(
            413, "payload_too_large", message, "metadata", limit=MAX_METADATA_BYTES, size=size
        )
    service = JobService()
    with fields():
        job_id = service.enqueue(
            body.handler,
            body.payload,
            job_name=body.job_name,
            schedule=schedule,
            queue=body.queue,
            metadata=body.metadata,
            idempotency_key=body.idempotency_key,
            notify=body.notify,
        )
    recurring = service.recurring(job_id) if isinstance(schedule, str) else None
    if recurring is not None:  # a cron expression: the job is a schedule, fired by beat
        due = service.due(recurring["cron"]) if recurring["cron"].strip() != "@once" else None
        made = {key: recurring[key] for key in ("name", "task", "cron", "timezone")}
        audit.record(request, "job.enqueue", f"job:{job_id}", None, {"recurring": made})
        return 201, {"id": job_id, "status": "recurring", "due_at": due}
    job = service.get(job_id)
    audit.record(request, "job.enqueue", f"job:{job_id}", None, _snapshot(job))
    return 201, {"id": job_id, "status": job["status"], "due_at": job["due_at"]}


class JobFilter(BulkFilter):
    """``GET /jobs`` filters and paging."""

    limit: int = Field(50, ge=1, le=500)
    cursor: Text | None = Field(None, max_length=200, description="next_cursor of a page")


@router.get("/jobs", response={200: JobPage, **errors()}, **needs("read"))
def list_jobs(request: HttpRequest, query: Query[JobFilter]) -> dict[str, Any]:
    """Jobs, newest first, filtered by status, handler, queue and creation time."""
    if query.cursor is not None:
        try:
            decode_cursor(query.cursor)
        except ValueError as exc:
            raise ApiError(400, "invalid_cursor", str(exc), "cursor") from None
    rows, cursor = JobService().list(
        status=query.status,
        handler=query.handler,
        queue=query.queue,
        since=query.since,
        until=query.until,
        limit=query.limit,
        cursor=query.cursor,
    )
    return {"items": [job_out(row) for row in rows], "next_cursor": cursor}


def requeue_one(service: JobService, job_id: uuid.UUID, job: dict[str, Any] | None = None) -> None:
    """Requeue one job; 409 when another job of its name is active (names are unique
    among active jobs, so the old run cannot come back while the new one waits)."""
    try:
        service.requeue(job_id)
    except JobNameTaken as exc:
        raise ApiError(409, "conflict", str(exc), "job_id") from None


def _matching(action: str, body: BulkFilter) -> list[uuid.UUID]:
    allowed = set(BULK_ALLOWED[action])
    if isinstance(body, BulkCancel) and body.terminate:
        allowed = allowed | {JobStatus.RUNNING}
    if body.status is not None and body.status not in allowed:
        raise ApiError(
            422,
            "invalid_request",
            f"jobs that are {body.status} cannot be {PAST[action]}; "
            f"choose one of {', '.join(sorted(allowed))}",
            "status",
        )
    statuses: tuple[str, ...] = (body.status,) if body.status else BULK_DEFAULT[action]
    if action == "cancel" and isinstance(body, BulkCancel) and body.terminate and not body.status:
        statuses = (*statuses, JobStatus.RUNNING)
    return JobService().matching(
        statuses,
        handler=body.handler,
        queue=body.queue,
        since=body.since,
        until=body.until,
        limit=body.limit,
    )


def _bulk(request: HttpRequest, action: str, body: BulkFilter) -> dict[str, Any]:
    ids = _matching(action, body)
    service = JobService()
    done: list[uuid.UUID] = []
    skipped: list[dict[str, Any]] = []
    for job_id in ids:
        try:
            if isinstance(body, BulkCancel):
                service.cancel(job_id, terminate=body.terminate)
            elif action == "purge":
                service.purge(job_id)
            else:
                requeue_one(service, job_id)
            done.append(job_id)
        except (ConveyorError, ApiError) as exc:  # one job's refusal stops none other
            skipped.append({"id": job_id, "reason": str(exc)})
    wanted = body.model_dump(mode="json", exclude_none=True)
    audit.record(
        request,
        f"job.bulk_{action}",
        "filter:" + kombu_json.dumps(wanted),
        {"filter": wanted, "matched": ids},
        {"done": done, "skipped": skipped},
    )
    return {"matched": len(ids), "done": done, "skipped": skipped}


# The bulk routes come before ``/jobs/{job_id}/…``, which would otherwise take "bulk" for an id.
@router.post("/jobs/bulk/requeue", response={200: BulkOut, **errors()}, **needs("write"))
def bulk_requeue(request: HttpRequest, body: BulkFilter) -> dict[str, Any]:
    """Requeue every job the filter matches (failed and dead ones unless a status is given)."""
    return _bulk(request, "requeue", body)


@router.post("/jobs/bulk/cancel", response={200: BulkOut, **errors()}, **needs("write"))
def bulk_cancel(request: HttpRequest, body: BulkCancel) -> dict[str, Any]:
    """Cancel every job the filter matches (those that wait unless a status is given)."""
    return _bulk(request, "cancel", body)


@router.post("/jobs/bulk/purge", response={200: BulkOut, **errors()}, **needs("write"))
def bulk_purge(request: HttpRequest, body: BulkFilter) -> dict[str, Any]:
    """Delete every dead job the filter matches, with its history: the dead-letter
    queue's purge (only ``dead`` jobs; requeue the others or let retention take them)."""
    return _bulk(request, "purge", body)


@router.get("/jobs/{job_id}", response={200: JobDetail, **errors(404)}, **needs("read"))
def get_job(request: HttpRequest, job_id: uuid.UUID) -> dict[str, Any]:
    """One job with its timeline: every state change, oldest first."""
    service = JobService()
    with fields():
        return {**job_out(service.get(job_id)), "events": service.history(job_id)}


@router.patch("/jobs/{job_id}", response={200: JobDetail, **errors(404, 409)}, **needs("write"))
def reschedule(request: HttpRequest, job_id: uuid.UUID, body: JobPatch) -> dict[str, Any]:
    """Move a job that waits (status scheduled) to a new due time."""
    schedule = parse_schedule(body.schedule)
    service = JobService()
    with fields():
        before = service.get(job_id)
        service.update_schedule(job_id, schedule)
    after = service.get(job_id)
    audit.record(request, "job.reschedule", f"job:{job_id}", _snapshot(before), _snapshot(after))
    return {**job_out(after), "events": service.history(job_id)}


@router.delete(
    "/jobs/{job_id}", response={200: JobDetail, **errors(404, 409, 503)}, **needs("write")
)
def cancel(request: HttpRequest, job_id: uuid.UUID, terminate: bool = False) -> dict[str, Any]:
    """Cancel a job that has not run yet; ``terminate=true`` also stops a running one."""
    service = JobService()
    with fields():
        before = service.get(job_id)
        service.cancel(job_id, terminate=terminate)
    after = service.get(job_id)
    audit.record(request, "job.cancel", f"job:{job_id}", _snapshot(before), _snapshot(after))
    return {**job_out(after), "events": service.history(job_id)}


@router.post(
    "/jobs/{job_id}/requeue", response={200: JobDetail, **errors(404, 409, 503)}, **needs("write")
)
def requeue(request: HttpRequest, job_id: uuid.UUID) -> dict[str, Any]:
    """Run a failed, dead or cancelled job again, from its stored payload, with its id."""
    service = JobService()
    with fields():
        before = service.get(job_id)
        requeue_one(service, job_id, before)
    after = service.get(job_id)
    audit.record(request, "job.requeue", f"job:{job_id}", _snapshot(before), _snapshot(after))
    return {**job_out(after), "events": service.history(job_id)}


@router.post("/jobs/{job_id}/purge", response={200: BulkOut, **errors(404, 409)}, **needs("write"))
def purge(request: HttpRequest, job_id: uuid.UUID) -> dict[str, Any]:
    """Delete a dead job and its history, for good (409 for a job that is not dead)."""
    service = JobService()
    with fields():
        before = service.get(job_id)
        service.purge(job_id)
    audit.record(request, "job.purge", f"job:{job_id}", _snapshot(before), None)
    return {"matched": 1, "done": [job_id], "skipped": []}
