"""Counts and times read from the ledger: statistics, reports, health and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from app.jobs.models import FINISHED, JobStatus
from app.jobs.store.queries import (
    ATTEMPTS_ENDED,
    BOUND_READS,
    BUSY_WORKERS,
    CREATED,
    DURATIONS,
    ENDED_BY_QUEUE,
    ENDED_STATES,
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


def ended_by_queue(conn: Connection, statuses: list[str], since: datetime) -> dict[str, int]:
    """Per queue, the jobs that ended in one of ``statuses`` since ``since``."""
    rows = conn.exec_driver_sql(ENDED_BY_QUEUE, {"statuses": statuses, "since": since})
    return {str(queue): int(count) for queue, count in rows}


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


@dataclass
class Attempts:
    """The attempts of one task on one queue that ended in a window."""

    #: How many ended in each outcome (the state the attempt led to).
    outcomes: dict[str, int] = field(default_factory=dict)
    #: Timed attempts by duration: item ``i`` counts those above ``bounds[i - 1]`` and at
    #: most ``bounds[i]``; the last item those above every bound.
    buckets: list[int] = field(default_factory=list)
    #: Their total duration, seconds.
    duration_s: float = 0.0


def attempts_ended(
    conn: Connection, window_s: float, bounds: list[float], timeout_ms: int | None = None
) -> dict[tuple[str, str], Attempts]:
    """Attempts that ended in the last ``window_s`` seconds (jobs that finished then, and
    retries recorded then), by ``(handler, queue)``: how many ended in each outcome, and
    their durations in the buckets that the sorted ``bounds`` delimit (Prometheus' ``le``).

    With ``timeout_ms``, PostgreSQL cancels the read past that many milliseconds. The
    bounds it sets hold for the rest of ``conn``'s transaction.
    """
    conn.exec_driver_sql(BOUND_READS, {"ms": timeout_ms or 0})
    params = {
        "window_s": window_s,
        "buckets": len(bounds),
        "negated": sorted(-float(bound) for bound in bounds),
        "ended": ENDED_STATES,
        "running": JobStatus.RUNNING.value,
        "retrying": JobStatus.RETRYING.value,
    }
    found: dict[tuple[str, str], Attempts] = {}
    for handler, queue, outcome, bucket, count, timed, total_s in conn.exec_driver_sql(
        ATTEMPTS_ENDED, params
    ):
        attempts = found.setdefault(
            (str(handler), str(queue)), Attempts(buckets=[0] * (len(bounds) + 1))
        )
        attempts.outcomes[outcome] = attempts.outcomes.get(outcome, 0) + int(count)
        if bucket is not None:
            attempts.buckets[int(bucket)] += int(timed)
            attempts.duration_s += float(total_s)
    return found
