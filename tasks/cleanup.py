"""The catalog's cleanups on the ``background`` queue; the domain does the deleting.

* ``maintenance.cleanup_inactive_products`` (the worker-service template's cleanup of
  inactive entities): products nothing changed for ``inactive_days``, in batches of
  ``batch_size``, one transaction each; ``dry_run`` only counts
  (:func:`app.catalog.cleanup.cleanup_inactive` says what inactive means).
* ``maintenance.purge_catalog`` (the services framework's nightly cleanup): audit
  entries older than 90 days and products soft-deleted more than 30 days ago.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.catalog import cleanup
from app.celery import app
from app.jobs.task import ConveyorTask


class InactiveCleanupPayload(BaseModel):
    """What the cleanup of inactive products deletes, and how; no other field is taken."""

    model_config = ConfigDict(extra="forbid")

    #: Days without a change after which a product is inactive.
    inactive_days: int = Field(default=90, ge=1, le=36500)
    #: Products deleted per transaction.
    batch_size: int = Field(default=100, ge=1, le=10_000)
    #: Count what would be deleted, and delete nothing.
    dry_run: bool = False


@app.task(
    bind=True,
    name="maintenance.cleanup_inactive_products",
    payload_model=InactiveCleanupPayload,
)
def cleanup_inactive_products(
    self: ConveyorTask, inactive_days: int = 90, batch_size: int = 100, dry_run: bool = False
) -> dict[str, Any]:
    """Delete (or, in a dry run, count) products inactive for ``inactive_days`` days."""
    options = InactiveCleanupPayload(
        inactive_days=inactive_days, batch_size=batch_size, dry_run=dry_run
    )

    def progress(done: int, total: int) -> None:
        self.progress(100 * done / total if total else 100, f"{done} of {total} products deleted")

    report = cleanup.cleanup_inactive(
        options.inactive_days, options.batch_size, dry_run=options.dry_run, progress=progress
    )
    verb = "would delete" if report.dry_run else "deleted"
    summary = (
        f"{verb} {report.deleted} products ({report.soft_deleted} soft-deleted), "
        f"kept {report.referenced} on orders"
    )
    self.progress(100, summary)
    return {
        "cutoff": report.cutoff.isoformat(),
        "dry_run": report.dry_run,
        "deleted": report.deleted,
        "live": report.live,
        "soft_deleted": report.soft_deleted,
        "referenced": report.referenced,
        "batches": report.batches,
        "summary": summary,
    }


@app.task(name="maintenance.purge_catalog")
def purge_catalog() -> dict[str, int]:
    """Delete catalog audit entries older than 90 days and products soft-deleted more
    than 30 days ago, in batches."""
    return cleanup.purge_retained()
