"""The catalog's monthly cleanup: cancelled orders older than ``catalog.retention_days`` (90).

The product catalog's specification asks for a monthly cleanup of data past 90 days.
What it takes is what no other cleanup does: cancelled orders, with their lines. They
never sold anything, and no report reads that far back (the analytics read 7 days, the
popularity 30, the monthly sales report the month before). Orders in any other state
are the shop's history and stay. One transaction, so a failed cleanup deletes nothing;
what it deleted is written to the audit log.

The audit log and soft-deleted products are the nightly retention's
(:func:`app.catalog.cleanup.purge_retained`), not this cleanup's. A soft-deleted product
that only cancelled orders named is kept until this cleanup takes them; the next nightly
retention then deletes the product.
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
    """Delete the cancelled orders placed more than ``days`` ago, with their lines; how
    many ``cancelled_orders`` and ``order_lines`` went."""
    with (engine or default_engine()).begin() as conn:
        before = cutoff(store.tables.now(conn), days)
        deleted = store.orders.purge_cancelled_orders(conn, before)
        store.audit.record_audit(conn, "catalog", None, "purge", {"cutoff": before, **deleted})
    return deleted
