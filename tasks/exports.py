"""Data exports on the ``reports`` queue: catalog rows to a stored file, its link mailed.

``reports.export`` (the worker-service template's data export) streams the rows of
``kind`` that ``filters`` select from PostgreSQL (a server-side cursor, one chunk in
memory at a time) into a temporary file as CSV or JSON Lines, saves it in file storage
under ``exports/<day>/<kind>-<job id>.<ext>`` and mails ``email_to`` an expiring link
to it (``web.public_url`` + ``files/<token>``, valid ``reports.export_link_lifetime_s``).
A retried export writes the same name again (``replace=True``), so the latest link wins.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel, field_validator

from app.catalog import exports
from app.catalog.store import ORDER_STATUSES
from app.celery import app
from app.db import engine
from app.errors import FileTooLarge, PermanentError
from app.jobs.task import ConveyorTask
from app.notifications import email, templates
from app.storage import dated, storage
from config.settings import EmailAddress, get_settings


class ProductFilters(BaseModel):
    """Which products an export takes (all live ones by default)."""

    model_config = ConfigDict(extra="forbid")

    category_id: int | None = Field(default=None, ge=1)
    #: Only products changed at or after this time.
    updated_since: AwareDatetime | None = None
    #: Soft-deleted products too.
    include_deleted: bool = False


class OrderFilters(BaseModel):
    """Which orders an export takes (all by default)."""

    model_config = ConfigDict(extra="forbid")

    #: One of the order states (``app.catalog.store.ORDER_STATUSES``).
    status: str | None = None
    customer_id: int | None = Field(default=None, ge=1)
    #: Orders placed at or after this time, and before ``created_before``.
    created_since: AwareDatetime | None = None
    created_before: AwareDatetime | None = None

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str | None) -> str | None:
        if value is not None and value not in ORDER_STATUSES:
            raise ValueError(f"not an order status; one of {', '.join(ORDER_STATUSES)}")
        return value


class _Export(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Who gets the link.
    email_to: list[EmailAddress] = Field(min_length=1, max_length=10)
    format: Literal["csv", "jsonl"] = "csv"


class ProductExport(_Export):
    """An export of products."""

    kind: Literal["products"]
    filters: ProductFilters = ProductFilters()


class OrderExport(_Export):
    """An export of orders."""

    kind: Literal["orders"]
    filters: OrderFilters = OrderFilters()


class ExportPayload(RootModel[Annotated[ProductExport | OrderExport, Field(discriminator="kind")]]):
    """A data export: ``kind`` (``products`` or ``orders``) picks which ``filters`` apply."""


@app.task(bind=True, name="reports.export", payload_model=ExportPayload)
def export(
    self: ConveyorTask,
    kind: str,
    email_to: list[str],
    format: str = "csv",
    filters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export the rows of ``kind`` that ``filters`` select as ``format`` into storage and
    mail ``email_to`` a download link; the stored name, rows, bytes and link."""
    payload = {"kind": kind, "email_to": email_to, "format": format, "filters": filters or {}}
    try:
        job = ExportPayload.model_validate(payload).root
    except ValueError as exc:
        raise PermanentError(f"invalid export payload: {exc}") from exc
    extension, content_type = exports.FORMATS[job.format]
    job_id = uuid.UUID(self.request.id) if self.request.id else uuid.uuid4()
    name = dated("exports", f"{job.kind}-{job_id.hex}.{extension}", datetime.now(UTC).date())

    limit = storage().max_file_bytes

    def progress(done: int, total: int) -> None:
        # Storage would refuse the file at the end: stop as soon as it is too large.
        if out.tell() > limit:
            raise FileTooLarge(name, limit)
        self.progress(90 * done / total if total else 90, f"{done} of {total} rows written")

    with tempfile.TemporaryFile() as out, engine().connect() as conn:
        rows = exports.write(
            conn, out, job.kind, job.filters.model_dump(), job.format, progress=progress
        )
        out.seek(0)
        stored = storage().save(name, out, content_type=content_type, job_id=job_id, replace=True)
    settings = get_settings()
    lifetime_s = settings.reports.export_link_lifetime_s
    link = f"{settings.web.base_url}/{storage().link(stored, lifetime_s=lifetime_s)}"
    self.progress(95, f"{rows} rows stored; mailing the link")
    mail = templates.render(
        "export_ready",
        kind=job.kind,
        rows=rows,
        format=job.format,
        size_bytes=stored.size_bytes,
        link=link,
        lifetime_hours=lifetime_s // 3600,
    )
    message = mail.message(list(job.email_to))
    message_id = email.deliver(message)
    summary = f"{rows} {job.kind} exported as {job.format}, link mailed"
    self.progress(100, summary)
    return {
        "name": stored.name,
        "rows": rows,
        "size_bytes": stored.size_bytes,
        "sha256": stored.sha256,
        "link": link,
        "message_id": message_id,
        "summary": summary,
    }
