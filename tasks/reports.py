"""Reports on the ``reports`` queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.celery import app
from app.db import engine
from tasks.base import ConveyorTask


@app.task(base=ConveyorTask, name="reports.job_summary")
def job_summary(hours: int = 24) -> dict[str, object]:
    """Count finished jobs by task and state over the last ``hours`` hours."""
    if not 0 < hours <= 24 * 366:
        raise ValueError(f"hours={hours} must be between 1 and {24 * 366}")
    since = datetime.now(UTC) - timedelta(hours=hours)
    with engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT coalesce(name, '?') AS name, status, count(*) AS n "
                "FROM celery_taskmeta WHERE date_done >= :since "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            {"since": since.replace(tzinfo=None)},
        ).all()
    by_task: dict[str, dict[str, int]] = {}
    for name, status, count in rows:
        by_task.setdefault(name, {})[status] = int(count)
    return {
        "since": since.isoformat(),
        "total": sum(sum(states.values()) for states in by_task.values()),
        "by_task": by_task,
    }
