"""Reports on the ``reports`` queue."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.jobs.models import FINISHED, JobStatus
from tasks.statistics import durations_by_handler, window_start

#: Failure groups the daily summary lists, most frequent first.
TOP_FAILURES = 10

#: Final states in their enum order, each reported per handler even when zero.
FINAL_STATES = tuple(status.value for status in JobStatus if status in FINISHED)

BY_HANDLER = text("""
SELECT handler, status, count(*) FROM jobs WHERE created_at >= :since
GROUP BY 1, 2 ORDER BY 1, 2
""")

FAILURES = text("""
SELECT handler,
       last_error,
       count(*),
       (array_agg(id ORDER BY coalesce(finished_at, status_at) DESC, id DESC))[1]
FROM jobs
WHERE status IN ('failed', 'dead') AND created_at >= :since
GROUP BY handler, last_error
ORDER BY count(*) DESC, max(coalesce(finished_at, status_at)) DESC, handler, last_error
LIMIT :limit
""")


@app.task(name="reports.job_summary")
def job_summary(hours: int = 24) -> dict[str, Any]:
    """Summarize the jobs created in the last ``hours`` hours.

    ``by_handler`` counts every status per handler, ``outcomes`` the final ones;
    ``durations`` times completed jobs; ``top_failures`` groups failed and dead jobs
    by handler and last error, with the latest job of each group.
    """
    since = window_start(hours)
    with engine().connect() as conn:
        rows = conn.execute(BY_HANDLER, {"since": since}).all()
        durations = durations_by_handler(conn, since)
        failures = conn.execute(FAILURES, {"since": since, "limit": TOP_FAILURES}).all()
    by_handler: dict[str, dict[str, int]] = {}
    for handler, status, count in rows:
        by_handler.setdefault(handler, {})[status] = int(count)
    outcomes = {
        handler: {status: states.get(status, 0) for status in FINAL_STATES}
        for handler, states in by_handler.items()
    }
    return {
        "since": since.isoformat(),
        "total": sum(sum(states.values()) for states in by_handler.values()),
        "by_handler": by_handler,
        "outcomes": outcomes,
        "durations": durations,
        "top_failures": [
            {"handler": handler, "error": error, "count": int(count), "latest_job_id": str(job)}
            for handler, error, count, job in failures
        ],
    }
