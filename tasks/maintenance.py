"""Housekeeping on the ``background`` queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.celery import app
from app.db import engine
from config.settings import get_settings
from tasks.base import ConveyorTask

#: Rows deleted per statement, so no delete holds locks for long.
BATCH = 5000


@app.task(base=ConveyorTask, name="maintenance.cleanup_expired_results")
def cleanup_expired_results() -> dict[str, int]:
    """Delete stored task results older than ``result_expires_s``, in batches."""
    cutoff = datetime.now(UTC) - timedelta(seconds=get_settings().result_expires_s)
    deleted: dict[str, int] = {}
    for table in ("celery_taskmeta", "celery_tasksetmeta"):
        total = 0
        while True:
            with engine().begin() as conn:
                count = conn.execute(
                    text(
                        f"DELETE FROM {table} WHERE id IN ("
                        f"SELECT id FROM {table} WHERE date_done < :cutoff LIMIT :batch)"
                    ),
                    {"cutoff": cutoff.replace(tzinfo=None), "batch": BATCH},
                ).rowcount
            total += count
            if count < BATCH:
                break
        deleted[table] = total
    return deleted
