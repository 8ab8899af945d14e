"""Held jobs: written with ``release_at``, published when due; and schedules' waiting runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from app.jobs.models import JobStatus
from app.jobs.store.queries import DUE, HOLD, INSERT_EVENT, PROMOTE, RELEASED, UNFINISHED_STATES


def hold(
    conn: Connection,
    *,
    job_id: str,
    handler: str,
    queue: str,
    status: JobStatus,
    due: datetime,
    payload: str,
    options: str,
    detail: str,
) -> bool:
    """Keep a message due at ``due`` in its job's row (``payload`` and publish ``options``
    as JSON text), with an event if the job is new; True if it is."""
    params = {
        "id": job_id,
        "handler": handler,
        "queue": queue,
        "status": status.value,
        "due": due,
        "payload": payload,
        "options": options,
    }
    created = bool(conn.exec_driver_sql(HOLD, params).scalar())
    if created:
        event(conn, job_id, None, status, detail)
    return created


def event(
    conn: Connection,
    job_id: uuid.UUID | str,
    from_status: str | None,
    to_status: str,
    detail: str,
) -> None:
    """Record one state change of a job, now."""
    conn.exec_driver_sql(
        INSERT_EVENT,
        {
            "id": job_id,
            "from_status": None if from_status is None else str(from_status),
            "to_status": str(to_status),
            "detail": detail,
        },
    )


def due(conn: Connection, limit: int, ids: list[uuid.UUID] | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` held jobs due now (only ``ids`` if given), oldest due first, locked
    until the caller's transaction ends; jobs another releaser holds are skipped."""
    params = {"limit": limit, "ids": None if ids is None else [str(i) for i in ids]}
    return [dict(row) for row in conn.exec_driver_sql(DUE, params).mappings()]


def released(conn: Connection, job: dict[str, Any], detail: str) -> None:
    """``job`` (a row :func:`due` gave) was published: no longer held, and queued if it
    was scheduled (with an event saying ``detail``)."""
    conn.exec_driver_sql(
        RELEASED,
        {"id": job["id"], "scheduled": JobStatus.SCHEDULED.value, "queued": JobStatus.QUEUED.value},
    )
    if job["status"] == JobStatus.SCHEDULED:
        event(conn, job["id"], JobStatus.SCHEDULED, JobStatus.QUEUED, detail)


def promote_waiting(conn: Connection) -> list[uuid.UUID]:
    """Release the jobs waiting for a name (``queue_one``) whose named run has finished:
    each takes the name, with an event; their ids."""
    params = {"scheduled": JobStatus.SCHEDULED.value, "unfinished": UNFINISHED_STATES}
    return list(conn.exec_driver_sql(PROMOTE, params).scalars())
