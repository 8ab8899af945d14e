"""The catalog's monthly cleanup: data older than ``catalog.retention_days`` (90) goes.

What goes: entries of the catalog's audit log, cancelled orders (with their lines) and
products soft-deleted before the cutoff (with their stock and search document). A
soft-deleted product that an order line still refers to stays: orders are history.
One transaction, so a failed cleanup deletes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from app.catalog import store
from app.db import engine as default_engine
from config.settings import get_settings


def cutoff(now: datetime, days: int | None = None) -> datetime:
    """The instant before which data is old: ``days`` (``catalog.retention_days``) ago."""
    return now - timedelta(days=get_settings().catalog.retention_days if days is None else days)


def purge(days: int | None = None, engine: Engine | None = None) -> dict[str, int]:
    """Delete the catalog data older than ``days``; how many rows of each kind went."""
    with (engine or default_engine()).begin() as conn:
        deleted = store.purge_old(conn, cutoff(store.now(conn), days))
        store.record_audit(conn, "catalog", None, "purge", deleted)
    return deleted
