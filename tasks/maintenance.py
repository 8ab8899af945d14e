"""Housekeeping on the ``background`` queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.jobs.heartbeat import recover_lost_jobs
from config.settings import get_settings
from tasks.base import ConveyorTask

#: Jobs deleted per statement, so no delete holds its locks for long.
BATCH = 2000

PURGE = text("""
WITH doomed AS (
    SELECT id FROM jobs
    WHERE status = ANY(:statuses) AND finished_at < :cutoff
    ORDER BY finished_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed)
)
DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)
""")


@app.task(base=ConveyorTask, name="maintenance.purge_finished_jobs")
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


FRESH = text("""
SELECT last_seen > now() - make_interval(secs => :fresh) FROM workers WHERE hostname = :hostname
""")


@app.task(base=ConveyorTask, bind=True, name="maintenance.recover_stuck_jobs")
def recover_stuck_jobs(self: ConveyorTask) -> int:
    """Requeue jobs left ``running`` by workers that stopped heartbeating; return how many.

    Only while this worker's own heartbeat is fresh: right after a database outage
    every heartbeat is stale, and live workers' jobs must not be taken from them.
    """
    ledger = get_settings().ledger
    with engine().connect() as conn:
        fresh = conn.execute(
            FRESH, {"fresh": 2 * ledger.heartbeat_interval_s, "hostname": self.request.hostname}
        ).scalar()
    if not fresh:
        return 0
    return len(recover_lost_jobs())
