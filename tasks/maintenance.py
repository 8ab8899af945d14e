"""Housekeeping on the ``background`` queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.celery import app
from app.db import engine
from app.jobs import store
from app.jobs.models import JobStatus
from config.settings import get_settings

#: Jobs deleted per statement, so no delete holds its locks for long.
BATCH = 2000


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
        total = 0
        while True:
            with engine().begin() as conn:
                count = store.jobs.purge(conn, statuses, now - timedelta(days=days), BATCH)
            total += count
            if count < BATCH:
                break
        deleted[label] = total
    return deleted
