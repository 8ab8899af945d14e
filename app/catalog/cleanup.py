"""Deleting what the catalog no longer needs, in short batches, one transaction each.

**Inactive products** (the worker-service template's cleanup): a product is inactive
when nothing changed it for ``inactive_days``, that is, its ``updated_at`` is older
than the cutoff. A soft delete stamps ``updated_at`` too, so a product soft-deleted
that long ago is inactive as well. A product that an order line names is never
deleted (the order's history needs it, and the foreign key forbids it): it is counted
as ``referenced`` and kept. Its stock and search document go with it (cascade).

**Retention** (the services framework's nightly cleanup): audit entries older than
90 days, and products soft-deleted more than 30 days ago (on no order line). It is the
one cleanup of both; the monthly one (:mod:`app.catalog.retention`) takes old cancelled
orders, which may leave a soft-deleted product on no order line for the next night.

Every batch is its own transaction, so no delete holds its locks for long, and a run
that stops half-way has deleted whole batches only; the next run goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from app.catalog import store
from app.db import engine as default_engine

#: Days an audit entry is kept by the nightly retention.
AUDIT_RETENTION_DAYS = 90
#: Days a soft-deleted product is kept by the nightly retention.
SOFT_DELETED_RETENTION_DAYS = 30
#: Rows the nightly retention deletes per transaction.
RETENTION_BATCH = 1000

#: Told after each batch: products deleted so far, and how many the run set out to delete.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CleanupReport:
    """What one cleanup of inactive products found, and deleted unless it was a dry run."""

    cutoff: datetime
    dry_run: bool
    #: Live products past the cutoff (deleted, or that would be in a dry run).
    live: int
    #: Soft-deleted products past the cutoff (deleted, or that would be).
    soft_deleted: int
    #: Products past the cutoff kept because an order line names them.
    referenced: int
    #: Delete transactions run (0 in a dry run).
    batches: int

    @property
    def deleted(self) -> int:
        """Products deleted (or, in a dry run, that would be)."""
        return self.live + self.soft_deleted


def cleanup_inactive(
    inactive_days: int,
    batch_size: int,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
    engine: Engine | None = None,
) -> CleanupReport:
    """Delete products inactive for ``inactive_days`` days, ``batch_size`` per
    transaction; a dry run deletes nothing and counts what would go."""
    db = engine or default_engine()
    cutoff = (now or datetime.now(UTC)) - timedelta(days=inactive_days)
    with db.connect() as conn:
        found = store.products.count_inactive(conn, cutoff)
    expected = found["live"] + found["soft_deleted"]
    if dry_run:
        return CleanupReport(
            cutoff, True, found["live"], found["soft_deleted"], found["referenced"], 0
        )
    live = soft_deleted = batches = 0
    while True:
        with db.begin() as conn:
            gone = store.products.delete_inactive(conn, cutoff, batch_size)
            count = gone["live"] + gone["soft_deleted"]
            if count:
                batches += 1
                detail = {"cutoff": cutoff, **gone}
                store.audit.record_audit(conn, "product", None, "cleanup", detail)
        live += gone["live"]
        soft_deleted += gone["soft_deleted"]
        if progress is not None:
            progress(live + soft_deleted, max(expected, live + soft_deleted))
        if count < batch_size:
            break
    return CleanupReport(cutoff, False, live, soft_deleted, found["referenced"], batches)


def _in_batches(delete_batch: Callable[..., int], db: Engine, cutoff: datetime) -> int:
    total = 0
    while True:
        with db.begin() as conn:
            count = delete_batch(conn, cutoff, RETENTION_BATCH)
        total += count
        if count < RETENTION_BATCH:
            return total


def purge_retained(*, now: datetime | None = None, engine: Engine | None = None) -> dict[str, int]:
    """Delete audit entries past :data:`AUDIT_RETENTION_DAYS` and products soft-deleted
    past :data:`SOFT_DELETED_RETENTION_DAYS`, in batches; how many of each went."""
    db = engine or default_engine()
    now = now or datetime.now(UTC)
    return {
        "audit_entries": _in_batches(
            store.audit.purge_audit, db, now - timedelta(days=AUDIT_RETENTION_DAYS)
        ),
        "soft_deleted_products": _in_batches(
            store.products.purge_soft_deleted, db, now - timedelta(days=SOFT_DELETED_RETENTION_DAYS)
        ),
    }
