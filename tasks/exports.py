"""Data exports on the ``reports`` queue: catalog rows to a stored file, its link mailed.

``reports.export`` (the worker-service template's data export) streams the rows of
``kind`` that ``filters`` select from PostgreSQL (a server-side cursor, one chunk in
memory at a time) into a temporary file as CSV or JSON Lines, saves it in file storage
under ``exports/<day>/<kind>-<job id>.<ext>`` and mails ``email_to`` an expiring link
to it (``web.public_url`` + ``files/<token>``, valid ``reports.export_link_lifetime_s``).
A retried export writes the same name again (``replace=True``), so the latest link wins.
"""

from __future__ import annotations

import smtplib
import tempfile
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel, field_validator

from app.catalog import exports
from app.catalog.store import ORDER_STATUSES
from app.celery import app
from app.db import engine
from app.errors import PermanentError, TransientError
from app.jobs.task import ConveyorTask
from app.notifications import email
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


def deliver(message: EmailMessage) -> str:
    """Send ``message`` through the SMTP settings; a 4xx or an unreachable server is worth
    a retry (``TransientError``), a 5xx is not (``PermanentError``)."""
    settings = get_settings()
    try:
        return email.send_message(settings.smtp, settings.embedded.data_dir / "outbox", message)
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransientError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        raise PermanentError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentError(f"SMTP refused every recipient: {exc.recipients!r}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientError(f"SMTP server unreachable: {exc}") from exc


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

    def progress(done: int, total: int) -> None:
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
    text = (
        f"Your export of {rows} {job.kind} ({job.format}, {stored.size_bytes} bytes) is ready:\n\n"
        f"{link}\n\nThe link works for {lifetime_s // 3600} hours.\n"
    )
    message = email.build_rich(
        settings.smtp.sender, list(job.email_to), f"Your {job.kind} export is ready", text
    )
    message_id = deliver(message)
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
