"""Job statistics on the ``background`` queue, cached in Redis for the web layer."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Connection, text

from app.celery import app
from app.db import engine
from app.jobs.store import counts
from config.settings import get_settings

#: Redis key holding the latest :func:`job_stats` result, as JSON.
CACHE_KEY = "conveyor:stats:jobs"
#: How long the cached statistics live: two missed hourly runs, then they are gone.
CACHE_TTL_S = 2 * 60 * 60
#: Longest window a caller may ask for, in hours.
MAX_HOURS = 24 * 366

DURATIONS = text("""
SELECT handler,
       count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s),
       max(duration_s)
FROM (
    SELECT handler, extract(epoch FROM finished_at - started_at)::float8 AS duration_s
    FROM jobs
    WHERE status = 'completed' AND created_at >= :since
      AND started_at IS NOT NULL AND finished_at IS NOT NULL
) completed
GROUP BY handler
ORDER BY handler
""")


def window_start(hours: int) -> datetime:
    """The start of a window of the last ``hours`` hours; refuses a window out of range."""
    if not 0 < hours <= MAX_HOURS:
        raise ValueError(f"hours={hours} must be between 1 and {MAX_HOURS}")
    return datetime.now(UTC) - timedelta(hours=hours)


def durations_by_handler(conn: Connection, since: datetime) -> dict[str, dict[str, float]]:
    """Run time (``finished_at - started_at``) of completed jobs created since ``since``.

    Per handler: ``count``, ``median_s``, ``p95_s`` and ``max_s``, rounded to milliseconds.
    """
    return {
        handler: {
            "count": int(count),
            "median_s": round(median, 3),
            "p95_s": round(p95, 3),
            "max_s": round(longest, 3),
        }
        for handler, count, median, p95, longest in conn.execute(DURATIONS, {"since": since})
    }


@app.task(name="statistics.job_stats")
def job_stats(hours: int = 24) -> dict[str, Any]:
    """Count and time the jobs of the last ``hours`` hours; cache the result and return it.

    Jobs are counted per handler, queue and status by creation time; ``unfinished``
    counts every job in an unfinished state now, whenever it was created.
    """
    since = window_start(hours)
    with engine().connect() as conn:
        created, unfinished = counts(conn, since)
        durations = durations_by_handler(conn, since)
    stats: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(),
        "since": since.isoformat(),
        "hours": hours,
        "created": {
            "total": sum(created["status"].values()),
            "by_handler": created["handler"],
            "by_queue": created["queue"],
            "by_status": created["status"],
        },
        "unfinished": unfinished,
        "durations": durations,
    }
    cache().set(CACHE_KEY, json.dumps(stats), ex=CACHE_TTL_S)
    return stats


def cached_job_stats() -> dict[str, Any] | None:
    """The statistics :func:`job_stats` cached last, or None when none are cached."""
    raw = cache().get(CACHE_KEY)
    if raw is None:
        return None
    stats: dict[str, Any] = json.loads(raw)
    return stats


def cache() -> redis.Redis:
    """The Redis client for caches (``cache_url``), one connection pool per process."""
    return _cache(get_settings().cache_url)


@functools.cache
def _cache(url: str) -> redis.Redis:
    # Bounded, so that a web request reading the cache never hangs on a dead Redis.
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
