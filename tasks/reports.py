"""Reports on the ``reports`` queue."""

from __future__ import annotations

from typing import Any

from app.celery import app
from app.db import engine
from app.jobs.statistics import window_start
from app.jobs.store import figures

#: Failure groups the daily summary lists, most frequent first.
TOP_FAILURES = 10


@app.task(name="reports.job_summary")
def job_summary(hours: int = 24) -> dict[str, Any]:
    """Summarize the jobs created in the last ``hours`` hours.

    ``by_handler`` counts every status per handler, ``outcomes`` the final ones;
    ``durations`` times completed jobs; ``top_failures`` groups failed and dead jobs
    by handler and last error, with the latest job of each group.
    """
    since = window_start(hours)
    with engine().connect() as conn:
        by_handler = figures.handler_states(conn, since)
        durations = figures.durations_by_handler(conn, since)
        failures = figures.top_failures(conn, since, TOP_FAILURES)
    outcomes = {
        handler: {status: states.get(status, 0) for status in figures.FINAL_STATES}
        for handler, states in by_handler.items()
    }
    return {
        "since": since.isoformat(),
        "total": sum(sum(states.values()) for states in by_handler.values()),
        "by_handler": by_handler,
        "outcomes": outcomes,
        "durations": durations,
        "top_failures": failures,
    }
