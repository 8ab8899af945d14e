"""Counts and times read from the ledger: statistics, reports, health and metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from app.jobs.models import FINISHED, JobStatus
from app.jobs.store.queries import (
    BUSY_WORKERS,
    CREATED,
    DURATIONS,
    FAILURES,
    HANDLER_STATES,
    LAST_START,
    OLDEST_QUEUED,
    QUEUE_STATES,
    UNFINISHED_NOW,
    UNFINISHED_STATES,
    states,
)

#: States a job fails in for good (what the reports group by error).
FAILED_STATES = states({JobStatus.FAILED, JobStatus.DEAD})
#: Final states in their life order.
FINAL_STATES = tuple(states(FINISHED))


def counts(conn: Connection, since: datetime) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Jobs created since ``since`` by ``handler``, ``queue`` and ``status`` (sorted), and
    the jobs in each unfinished state now, whenever created (every state, zeros too)."""
    created: dict[str, dict[str, int]] = {"handler": {}, "queue": {}, "status": {}}
    for dimension, key, count in conn.exec_driver_sql(CREATED, {"since": since}):
        created[dimension][key] = int(count)
    unfinished = dict.fromkeys(UNFINISHED_STATES, 0)
    for status, count in conn.exec_driver_sql(UNFINISHED_NOW, {"unfinished": UNFINISHED_STATES}):
        unfinished[status] = int(count)
    return {k: dict(sorted(v.items())) for k, v in created.items()}, unfinished


def queue_states(conn: Connection) -> dict[str, dict[str, int]]:
    """Every job in the ledger now, by queue then state (only the pairs that have jobs)."""
    found: dict[str, dict[str, int]] = {}
    for queue, status, count in conn.exec_driver_sql(QUEUE_STATES):
        found.setdefault(queue, {})[status] = int(count)
    return found


def handler_states(conn: Connection, since: datetime) -> dict[str, dict[str, int]]:
    """Jobs created since ``since``, by handler then state (both sorted)."""
    found: dict[str, dict[str, int]] = {}
    for handler, status, count in conn.exec_driver_sql(HANDLER_STATES, {"since": since}):
        found.setdefault(handler, {})[status] = int(count)
    return found


def durations_by_handler(conn: Connection, since: datetime) -> dict[str, dict[str, float]]:
    """Run time (``finished_at - started_at``) of completed jobs created since ``since``.

    Per handler: ``count``, ``median_s``, ``p95_s`` and ``max_s``, rounded to milliseconds.
    """
    params = {"since": since, "completed": JobStatus.COMPLETED.value}
    return {
        handler: {
            "count": int(count),
            "median_s": round(median, 3),
            "p95_s": round(p95, 3),
            "max_s": round(longest, 3),
        }
        for handler, count, median, p95, longest in conn.exec_driver_sql(DURATIONS, params)
    }


def top_failures(conn: Connection, since: datetime, limit: int) -> list[dict[str, Any]]:
    """Failed and dead jobs created since ``since`` grouped by handler and last error,
    the ``limit`` most frequent first (the most recent first among equals), each with
    its latest job."""
    params = {"since": since, "limit": limit, "failed": FAILED_STATES}
    return [
        {"handler": handler, "error": error, "count": int(count), "latest_job_id": str(job)}
        for handler, error, count, job in conn.exec_driver_sql(FAILURES, params)
    ]


def oldest_queued(conn: Connection) -> dict[str, datetime]:
    """Per queue, since when its oldest published (queued, not held) job waits."""
    rows = conn.exec_driver_sql(OLDEST_QUEUED, {"queued": JobStatus.QUEUED.value})
    return {str(queue): since for queue, since in rows}


def busy_workers(conn: Connection) -> set[str]:
    """The workers running a job now, as the ledger says."""
    rows = conn.exec_driver_sql(BUSY_WORKERS, {"running": JobStatus.RUNNING.value}).scalars()
    return {str(worker) for worker in rows if worker}


def last_start(conn: Connection, queue: str) -> datetime | None:
    """When the newest job of ``queue`` that started (in line order) started."""
    started: datetime | None = conn.exec_driver_sql(LAST_START, {"queue": queue}).scalar()
    return started
