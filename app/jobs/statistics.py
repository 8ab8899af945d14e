"""Job statistics: counted in the ledger, cached in Redis, read back by the web layer.

The hourly ``statistics.job_stats`` task calls :func:`refresh`; ``/api/v1/stats`` calls
:func:`cached` and counts live when it gives None (no run yet, older than
``cache.stats_ttl_s``, another window, Redis unreachable). Both sides agree on
:class:`JobStats`, the shape of what is cached. The console's front page shows them
in its Hourly statistics panel, beside its table of jobs per queue and state, which
always counts now: an operator acts on what that table shows.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, cast

import redis

from app.db import engine
from app.jobs.store import figures
from config.settings import get_settings

logger = logging.getLogger(__name__)

#: Redis key holding the latest :func:`refresh` result, as JSON.
CACHE_KEY = "conveyor:stats:jobs"
#: Longest window a caller may ask for, in hours.
MAX_HOURS = 24 * 366


class CreatedStats(TypedDict):
    """Jobs created in the window."""

    total: int
    by_handler: dict[str, int]
    by_queue: dict[str, int]
    by_status: dict[str, int]


class JobStats(TypedDict):
    """What :func:`refresh` caches and :func:`cached` gives back (JSON: times as ISO 8601)."""

    #: When the counts were taken.
    generated_at: str
    #: The window: jobs created since ``since``, the last ``hours`` hours.
    since: str
    hours: int
    created: CreatedStats
    #: Jobs in each unfinished state now, whenever created (zeros too).
    unfinished: dict[str, int]
    #: Run times of the window's completed jobs, per handler.
    durations: dict[str, dict[str, float]]


def window_start(hours: int) -> datetime:
    """The start of a window of the last ``hours`` hours; refuses a window out of range."""
    if not 0 < hours <= MAX_HOURS:
        raise ValueError(f"hours={hours} must be between 1 and {MAX_HOURS}")
    return datetime.now(UTC) - timedelta(hours=hours)


def compute(hours: int) -> JobStats:
    """Count and time the jobs of the last ``hours`` hours.

    Jobs are counted per handler, queue and status by creation time; ``unfinished``
    counts every job in an unfinished state now, whenever it was created.
    """
    since = window_start(hours)
    with engine().connect() as conn:
        created, unfinished = figures.counts(conn, since)
        durations = figures.durations_by_handler(conn, since)
    return {
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


def refresh(hours: int) -> JobStats:
    """:func:`compute` the statistics and cache them for ``cache.stats_ttl_s``; return them."""
    stats = compute(hours)
    ttl_s = get_settings().cache.stats_ttl_s
    if ttl_s:
        cache().set(CACHE_KEY, json.dumps(stats), ex=ttl_s)
    return stats


def cached(hours: int | None = None) -> JobStats | None:
    """The statistics :func:`refresh` cached, if fresh (younger than ``cache.stats_ttl_s``)
    and of a window of ``hours`` hours (any window if None); else None. Never raises:
    a reader without them counts live."""
    ttl_s = get_settings().cache.stats_ttl_s
    if not ttl_s:
        return None
    try:
        raw = cache().get(CACHE_KEY)
    except redis.RedisError as exc:
        logger.warning("cached job statistics unreadable, counting live: %s", exc)
        return None
    if raw is None:
        return None
    try:
        stats: dict[str, Any] = json.loads(raw)
        age = datetime.now(UTC) - datetime.fromisoformat(stats["generated_at"])
    except (ValueError, TypeError, KeyError) as exc:
        logger.warning("cached job statistics unusable, counting live: %s", exc)
        return None
    if not JobStats.__required_keys__ <= stats.keys() or age > timedelta(seconds=ttl_s):
        return None  # written by another version, or by a writer with a longer TTL
    if hours is not None and stats["hours"] != hours:
        return None
    return cast(JobStats, stats)


def cache() -> redis.Redis:
    """The Redis client for caches (``cache_url``), one connection pool per process."""
    return _cache(get_settings().cache_url)


@functools.cache
def _cache(url: str) -> redis.Redis:
    # Bounded, so that a web request reading the cache never hangs on a dead Redis.
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
