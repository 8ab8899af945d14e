"""The web's housekeeping task: the audit trail's retention.

The audit trail is the web's (:mod:`app.web.audit`), so its purge is too; the
worker registers this module with the tasks (:data:`app.celery.TASK_MODULES`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from django.db import close_old_connections

from app.celery import app
from beat.service import ensure_django
from config.settings import get_settings
from tasks.maintenance import BATCH, in_batches


@app.task(name="maintenance.purge_audit_records")
def purge_audit_records() -> dict[str, int]:
    """Delete audit records past ``web.audit_retention_days``, in short batches."""
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().web.audit_retention_days)
    ensure_django()
    from app.web.models import AuditRecord  # a Django model: importable once Django is set up

    # Django renews its connection per request and a worker has none: drop one that
    # died or aged since the last run, before and after.
    close_old_connections()
    try:
        return {"audit_records": in_batches(partial(AuditRecord.objects.purge, cutoff, BATCH))}
    finally:
        close_old_connections()
