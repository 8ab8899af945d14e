"""Housekeeping on the ``background`` queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.celery import app
from app.db import engine
from config.settings import get_settings

#: Jobs deleted per statement, so no delete holds its locks for long.
BATCH = 2000

#: A finished job whose ``finished_at`` the ledger lost (a duplicate delivery recorded
#: after the end clears it) is dated by when it reached its status: it still goes.
PURGE = text("""
WITH doomed AS (
    SELECT id FROM jobs
    WHERE status = ANY(:statuses) AND coalesce(finished_at, status_at) < :cutoff
    ORDER BY coalesce(finished_at, status_at)
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed)
)
DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)
""")


@app.task(name="maintenance.purge_finished_jobs")
def purge_finished_jobs() -> dict[str, int]:
    """Delete finished jobs past their retention, with their events, in short batches."""
    ledger = get_settings().ledger
    now = datetime.now(UTC)
    deleted: dict[str, int] = {}
    for label, statuses, days in (
        ("completed_or_cancelled", ["completed", "cancelled"], ledger.retention_days),
        ("failed_or_dead", ["failed", "dead"], ledger.failed_retention_days),
    ):
        total = 0
        while True:
            with engine().begin() as conn:
                count = conn.execute(
                    PURGE,
                    {"statuses": statuses, "cutoff": now - timedelta(days=days), "batch": BATCH},
                ).rowcount
            total += count
            if count < BATCH:
                break
        deleted[label] = total
    return deleted
