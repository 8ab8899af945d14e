"""The catalog's figures: daily sales analytics and products' popularity scores.

Both are computed in PostgreSQL (:mod:`app.catalog.store`) and cached in Redis
(:mod:`app.catalog.cache`): a day's analytics for 24 h, the top popularity scores for
12 h. Days are UTC days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import redis
from sqlalchemy import Engine

from app.catalog import cache as catalog_cache
from app.catalog import store
from app.db import engine as default_engine

#: Products listed as the day's top sellers.
TOP_PRODUCTS = 10
#: Days of sales a popularity score counts.
POPULARITY_WINDOW = timedelta(days=30)
#: Scores cached after a popularity update.
TOP_SCORES = 100


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC start of ``day`` and of the day after."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def daily(
    day: date, engine: Engine | None = None, cache: redis.Redis | None = None
) -> dict[str, Any]:
    """Sales per day (the last 7 days up to ``day``), top products and revenue by
    category of ``day``; cached under ``catalog:analytics:<day>`` and as the latest."""
    start, end = day_bounds(day)
    with (engine or default_engine()).connect() as conn:
        per_day = store.orders.sales_per_day(conn, start - timedelta(days=6), end)
        top = store.orders.top_products(conn, start, end, TOP_PRODUCTS)
        by_category = store.orders.revenue_by_category(conn, start, end)
        counts = store.tables.counts(conn)
    of_day = next((row for row in per_day if row["day"] == day), None)
    report = {
        "day": day.isoformat(),
        "generated_at": datetime.now(UTC).isoformat(),
        "orders": int(of_day["orders"]) if of_day else 0,
        "revenue": str(of_day["revenue"]) if of_day else "0",
        "sales_per_day": [
            {
                "day": row["day"].isoformat(),
                "orders": int(row["orders"]),
                "units": int(row["units"]),
                "revenue": str(row["revenue"]),
            }
            for row in per_day
        ],
        "top_products": [
            {**row, "units": int(row["units"]), "revenue": str(row["revenue"])} for row in top
        ],
        "revenue_by_category": [
            {**row, "units": int(row["units"]), "revenue": str(row["revenue"])}
            for row in by_category
        ],
        "products": counts["active_products"],
    }
    catalog_cache.put(
        catalog_cache.analytics_key(day.isoformat()), report, catalog_cache.ANALYTICS_TTL_S, cache
    )
    catalog_cache.put(catalog_cache.ANALYTICS_LATEST, report, catalog_cache.ANALYTICS_TTL_S, cache)
    return report


def update_popularity(
    engine: Engine | None = None, cache: redis.Redis | None = None
) -> dict[str, int]:
    """Score every live product from its last 30 days of sales and its stock, and cache
    the top scores; how many scores changed and how many were cached."""
    with (engine or default_engine()).begin() as conn:
        since = store.tables.now(conn) - POPULARITY_WINDOW
        changed = store.products.update_popularity(conn, since)
        top = store.products.popular_products(conn, TOP_SCORES)
    scores = {str(row["id"]): row["popularity_score"] for row in top}
    catalog_cache.put(catalog_cache.POPULARITY, scores, catalog_cache.POPULARITY_TTL_S, cache)
    return {"changed": changed, "cached": len(scores)}
