"""The catalog's sales reports on the ``reports`` queue, mailed as HTML with a CSV attached.

``reports.catalog_daily`` (06:00, the services framework's daily report) covers the
previous UTC day, ``reports.catalog_monthly`` (midnight on the 1st) the previous month.
Each is mailed to ``reports.email_to`` (or the payload's ``email_to``) through the SMTP
settings, from the ``sales_report`` templates: a text body, the same as HTML, and every
product sold as a CSV attachment.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.catalog import reports
from app.catalog.reports import SalesReport
from app.celery import app
from app.notifications import email, templates
from config.settings import EmailAddress, get_settings


class DailyReportPayload(BaseModel):
    """Which day (default: yesterday, UTC) and who gets it (default: ``reports.email_to``)."""

    model_config = ConfigDict(extra="forbid")

    day: date | None = None
    email_to: list[EmailAddress] | None = Field(default=None, max_length=100)


class MonthlyReportPayload(BaseModel):
    """Which month (``YYYY-MM``; default: last month) and who gets it."""

    model_config = ConfigDict(extra="forbid")

    month: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    email_to: list[EmailAddress] | None = Field(default=None, max_length=100)


def month_bounds(month: str | None, today: date) -> tuple[date, date]:
    """The first day of ``month`` (``YYYY-MM``; None: the month before ``today``'s) and
    the first day of the month after it."""
    if month:
        first = date.fromisoformat(f"{month}-01")
    else:
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return first, (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _mail(report: SalesReport, email_to: list[str] | None, filename: str) -> dict[str, Any]:
    """Mail ``report`` to ``email_to`` (None: ``reports.email_to``); its figures and
    the Message-ID (None when nobody is to get it)."""
    settings = get_settings()
    recipients = list(settings.reports.email_to if email_to is None else email_to)
    message_id = None
    if recipients:
        mail = templates.render("sales_report", report=report, top=report.top(), filename=filename)
        message = email.build_rich(
            settings.smtp.sender,
            recipients,
            mail.subject,
            mail.text,
            html=mail.html,
            attachments=[(filename, "text/csv", report.csv())],
        )
        message_id = email.deliver(message)
    return {**report.summary(), "emailed_to": recipients, "message_id": message_id}


@app.task(name="reports.catalog_daily", payload_model=DailyReportPayload)
def catalog_daily(day: str | None = None, email_to: list[str] | None = None) -> dict[str, Any]:
    """Mail the sales report of ``day`` (ISO date; default: yesterday, UTC)."""
    first = date.fromisoformat(day) if day else datetime.now(UTC).date() - timedelta(days=1)
    report = reports.build(
        f"Daily sales report, {first.isoformat()}",
        _midnight(first),
        _midnight(first) + timedelta(days=1),
    )
    return _mail(report, email_to, f"sales-{first.isoformat()}.csv")


@app.task(name="reports.catalog_monthly", payload_model=MonthlyReportPayload)
def catalog_monthly(month: str | None = None, email_to: list[str] | None = None) -> dict[str, Any]:
    """Mail the sales report of ``month`` (``YYYY-MM``; default: last month, UTC)."""
    first, following = month_bounds(month, datetime.now(UTC).date())
    report = reports.build(
        f"Monthly sales report, {first:%Y-%m}", _midnight(first), _midnight(following)
    )
    return _mail(report, email_to, f"sales-{first:%Y-%m}.csv")
