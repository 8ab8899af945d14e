"""The catalog's Redis cache: its keys, how long each lives, warming and cleanup.

Every key starts with :data:`PREFIX` and is written with a TTL, so Redis forgets what
nobody refreshes. The writers:

* the cache warmer (``catalog.cache_warmer``, every 6 h) writes :data:`POPULAR`,
  :data:`CATEGORIES` and :data:`COUNTS` for :data:`WARM_TTL_S` (7 h: an hour longer
  than the interval, so a late warming never leaves the cache cold);
* the daily analytics write ``catalog:analytics:<day>`` and :data:`ANALYTICS_LATEST`
  for :data:`ANALYTICS_TTL_S` (24 h);
* the popularity update writes :data:`POPULARITY` for :data:`POPULARITY_TTL_S` (12 h).

The cache cleanup (every 6 h) deletes keys under the prefix that have no TTL (left by
an older writer or by hand) and the analytics of days other than the latest.
Values are JSON. The client is ``cache_url`` (the Redis of the job statistics).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import redis
from sqlalchemy import Engine

from app.catalog import store
from app.db import engine as default_engine
from config.settings import get_settings

#: Every key of the catalog's cache starts so.
PREFIX = "catalog:"
#: The most popular live products (``catalog.popular_limit`` of them).
POPULAR = "catalog:popular"
#: The category tree with each category's live products.
CATEGORIES = "catalog:categories"
#: Live products in stock, out of stock, critical and low.
COUNTS = "catalog:counts"
#: The latest daily analytics; each day's are also under ``catalog:analytics:<day>``.
ANALYTICS_LATEST = "catalog:analytics:latest"
#: Products' popularity scores after the last update (the top ones).
POPULARITY = "catalog:popularity"

#: Seconds the warmed keys live: the warming interval (6 h) plus an hour.
WARM_TTL_S = 7 * 3600
#: Seconds the daily analytics live.
ANALYTICS_TTL_S = 24 * 3600
#: Seconds the popularity scores live.
POPULARITY_TTL_S = 12 * 3600


def analytics_key(day: str) -> str:
    """The key of one day's analytics (``day`` as ISO 8601, ``2026-12-01``)."""
    return f"{PREFIX}analytics:{day}"


def client() -> redis.Redis:
    """The Redis client for caches (``cache_url``), one connection pool per process."""
    return _client(get_settings().cache_url)


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def put(key: str, value: Any, ttl_s: int, cache: redis.Redis | None = None) -> None:
    """Write ``value`` as JSON under ``key`` for ``ttl_s`` seconds."""
    (cache or client()).set(key, json.dumps(value, default=str), ex=ttl_s)


def get(key: str, cache: redis.Redis | None = None) -> Any:
    """The JSON value under ``key``, or None."""
    raw = (cache or client()).get(key)
    return None if raw is None else json.loads(raw)


def warm(engine: Engine | None = None, cache: redis.Redis | None = None) -> dict[str, int]:
    """Load the popular products, the category tree and the stock counts into the cache;
    how many products and categories went in."""
    conf = get_settings().catalog
    with (engine or default_engine()).connect() as conn:
        popular = store.products.popular_products(conn, conf.popular_limit)
        tree = store.products.category_tree(conn)
        counts = store.inventory.stock_counts(
            conn, critical=conf.critical_stock, low=conf.low_stock
        )
    counts["categories"] = len(tree)
    put(POPULAR, popular, WARM_TTL_S, cache)
    put(CATEGORIES, tree, WARM_TTL_S, cache)
    put(COUNTS, counts, WARM_TTL_S, cache)
    return {"products": len(popular), "categories": len(tree)}


def cleanup(cache: redis.Redis | None = None) -> dict[str, int]:
    """Delete the catalog's keys without a TTL, and the analytics of days other than the
    latest; how many of each went."""
    cache = cache or client()
    latest = get(ANALYTICS_LATEST, cache)
    keep = analytics_key(latest["day"]) if isinstance(latest, dict) and "day" in latest else None
    persistent = stale = 0
    for raw in cache.scan_iter(match=f"{PREFIX}*", count=500):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        if cache.ttl(key) == -1:
            persistent += cache.delete(key)
        elif key.startswith(f"{PREFIX}analytics:") and key not in (ANALYTICS_LATEST, keep):
            stale += cache.delete(key)
    return {"without_ttl": persistent, "stale_analytics": stale}
