"""Housekeeping on the ``background`` queue: retention, each kind deleted by its owner's SQL.

Jobs and their events go through the ledger (:mod:`app.jobs.store`), fire records
through beat (:func:`beat.firing.purge`); the audit trail's retention is the web's
own (:mod:`app.web.housekeeping`). Each statement deletes at most ``BATCH`` rows, so
no delete holds its locks for long.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from app.celery import app
from app.db import engine
from app.jobs import store
from app.jobs.models import JobStatus
from beat import firing
from config.settings import get_settings

#: Rows deleted per statement, so no delete holds its locks for long.
BATCH = 2000


def in_batches(purge_batch: Callable[[], int]) -> int:
    """Call ``purge_batch`` until it deletes less than a full batch; how many went in all."""
    total = 0
    while True:
        count = int(purge_batch())
        total += count
        if count < BATCH:
            return total


def purge_jobs_batch(statuses: list[str], cutoff: datetime) -> int:
    """One batch of finished jobs in ``statuses`` that ended before ``cutoff``, one transaction."""
    with engine().begin() as conn:
        return store.jobs.purge(conn, statuses, cutoff, BATCH)


def purge_fires_batch(cutoff: datetime) -> int:
    """One batch of fire records written before ``cutoff``, one transaction."""
    with engine().begin() as conn:
        return firing.purge(conn, cutoff, BATCH)


@app.task(name="maintenance.purge_finished_jobs")
def purge_finished_jobs() -> dict[str, int]:
    """Delete finished jobs past their retention, with their events, in short batches."""
    ledger = get_settings().ledger
    now = datetime.now(UTC)
    deleted: dict[str, int] = {}
    for label, statuses, days in (
        (
            "completed_or_cancelled",
            store.queries.states({JobStatus.COMPLETED, JobStatus.CANCELLED}),
            ledger.retention_days,
        ),
        (
            "failed_or_dead",
            store.queries.states({JobStatus.FAILED, JobStatus.DEAD}),
            ledger.failed_retention_days,
        ),
    ):
        cutoff = now - timedelta(days=days)
        deleted[label] = in_batches(partial(purge_jobs_batch, statuses, cutoff))
    return deleted


@app.task(name="maintenance.purge_schedule_fires")
def purge_schedule_fires() -> dict[str, int]:
    """Delete schedule fire records past their retention, in short batches."""
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().beat.fire_retention_days)
    return {"schedule_fires": in_batches(partial(purge_fires_batch, cutoff))}
