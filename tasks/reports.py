"""Reports on the ``reports`` queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.celery import app
from app.db import engine
from tasks.base import ConveyorTask


@app.task(base=ConveyorTask, name="reports.job_summary")
def job_summary(hours: int = 24) -> dict[str, object]:
    """Count jobs created in the last ``hours`` hours by handler and status."""
    if not 0 < hours <= 24 * 366:
        raise ValueError(f"hours={hours} must be between 1 and {24 * 366}")
    since = datetime.now(UTC) - timedelta(hours=hours)
    with engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT handler, status, count(*) FROM jobs WHERE created_at >= :since "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            {"since": since},
        ).all()
    by_handler: dict[str, dict[str, int]] = {}
    for handler, status, count in rows:
        by_handler.setdefault(handler, {})[status] = int(count)
    return {
        "since": since.isoformat(),
        "total": sum(sum(states.values()) for states in by_handler.values()),
        "by_handler": by_handler,
    }
