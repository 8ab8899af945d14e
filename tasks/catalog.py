"""The sample catalog's recurring jobs, on the ``background`` queue (declared in
``beat/defaults.py``; the catalog's services are in :mod:`app.services.catalog`).

Each task is thin: it takes a date or nothing and calls the domain
(:mod:`app.catalog`). The cache cleanup and the monthly cleanup retry twice on a
``TransientError`` (Redis or PostgreSQL unreachable), as the specification asks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from app.catalog import analytics, cache, inventory, retention, search
from app.celery import app
from app.errors import TransientError
from app.storage import dated, storage

#: Days the weekly inventory report is kept in storage.
REPORT_KEEP_DAYS = 30
#: The report's name under its day: ``catalog/<day>/inventory-report.csv``.
REPORT_NAME = "inventory-report.csv"


class DayPayload(BaseModel):
    """A task that works on one UTC day; None: the task's default day."""

    day: date | None = None


class CleanupPayload(BaseModel):
    """The monthly cleanup of cancelled orders; ``days`` None: ``catalog.retention_days``."""

    days: int | None = Field(default=None, ge=1)


def _today() -> date:
    return datetime.now(UTC).date()


@app.task(name="catalog.daily_analytics", payload_model=DayPayload)
def daily_analytics(day: str | None = None) -> dict[str, Any]:
    """Compute a day's analytics (default: yesterday, UTC) and cache them for 24 h."""
    of = date.fromisoformat(day) if day else _today() - timedelta(days=1)
    report = analytics.daily(of)
    return {"day": report["day"], "orders": report["orders"], "revenue": report["revenue"]}


@app.task(name="catalog.cleanup_cache", max_retries=2)
def cleanup_cache() -> dict[str, int]:
    """Delete the catalog's cache keys without a TTL and stale analytics."""
    try:
        return cache.cleanup()
    except redis.RedisError as exc:
        raise TransientError(f"catalog cache cleanup: Redis failed: {exc}") from exc


@app.task(name="catalog.update_popularity")
def update_popularity() -> dict[str, int]:
    """Score every live product again and cache the top scores for 12 h."""
    return analytics.update_popularity()


@app.task(bind=True, name="catalog.inventory_report", payload_model=DayPayload)
def inventory_report(self: Any, day: str | None = None) -> str:
    """Save the inventory report (CSV) to storage for 30 days; return its name."""
    of = date.fromisoformat(day) if day else _today()
    stored = storage().save(
        dated("catalog", REPORT_NAME, of),
        inventory.report_csv(),
        content_type="text/csv",
        expires_at=datetime.now(UTC) + timedelta(days=REPORT_KEEP_DAYS),
        job_id=self.request.id,
        replace=True,
    )
    return stored.name


@app.task(name="catalog.monthly_cleanup", max_retries=2, payload_model=CleanupPayload)
def monthly_cleanup(days: int | None = None) -> dict[str, int]:
    """Delete cancelled orders placed more than ``days`` (``catalog.retention_days``, 90)
    days ago, with their lines; the nightly ``maintenance.purge_catalog`` owns the audit
    log and soft-deleted products."""
    try:
        return retention.purge(days)
    except OperationalError as exc:
        raise TransientError(f"catalog cleanup: PostgreSQL failed: {exc}") from exc


@app.task(name="catalog.warm_cache")
def warm_cache() -> dict[str, int]:
    """Warm the catalog's cache now (the ``catalog.cache_warmer`` service does it every 6 h)."""
    return cache.warm()


@app.task(name="catalog.sync_search")
def sync_search() -> dict[str, int]:
    """Sync the search index now (the ``catalog.search_sync`` service does it every 30 min)."""
    result = search.sync_stored()
    return {"indexed": result.indexed, "removed": result.removed, "read": result.read}
