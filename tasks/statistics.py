"""Job statistics on the ``background`` queue, cached in Redis for the web layer."""

from __future__ import annotations

from app.celery import app
from app.jobs import statistics
from app.jobs.statistics import JobStats


@app.task(name="statistics.job_stats")
def job_stats(hours: int = 24) -> JobStats:
    """Count and time the jobs of the last ``hours`` hours; cache the result and return it.

    Jobs are counted per handler, queue and status by creation time; ``unfinished``
    counts every job in an unfinished state now, whenever it was created. The web
    layer serves the cached result while it is fresh (``cache.stats_ttl_s``).
    """
    return statistics.refresh(hours)
