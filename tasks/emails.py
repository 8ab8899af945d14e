"""Email delivery on the ``emails`` queue: one mail, or one mail to each of many recipients."""

from __future__ import annotations

import smtplib
from typing import Any

from celery.utils.time import get_exponential_backoff_interval
from pydantic import BaseModel, Field

from app.celery import app
from app.errors import PermanentError, TransientError
from app.jobs.task import ConveyorTask
from app.notifications import email
from config.settings import EmailAddress, get_settings


class EmailPayload(BaseModel):
    """One plain-text mail."""

    to: list[EmailAddress] = Field(min_length=1, max_length=100)
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(max_length=1_000_000)


@app.task(name="emails.send", payload_model=EmailPayload)
def send(to: list[str] | str, subject: str, body: str) -> str:
    """Send one mail through the configured SMTP server; return its Message-ID."""
    recipients = [to] if isinstance(to, str) else to
    try:
        payload = EmailPayload(to=recipients, subject=subject, body=body)
    except ValueError as exc:
        raise PermanentError(f"invalid email payload: {exc}") from exc
    settings = get_settings()
    return email.deliver(
        email.build(settings.smtp.sender, payload.to, payload.subject, payload.body)
    )


class BulkEmailPayload(BaseModel):
    """The same plain-text mail to each recipient, one message each."""

    to: list[EmailAddress] = Field(min_length=1, max_length=1000)
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(max_length=1_000_000)


#: A recipient's outcome: ``delivered`` (with its Message-ID), ``refused`` by the server
#: for good (5xx), or ``deferred`` by it for now (4xx: tried again on the next attempt).
DELIVERED, REFUSED, DEFERRED = "delivered", "refused", "deferred"


@app.task(bind=True, name="emails.bulk", payload_model=BulkEmailPayload, max_retries=5)
def bulk(
    self: ConveyorTask,
    to: list[str],
    subject: str,
    body: str,
    outcomes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Send the mail to each recipient over one SMTP session; one refused address fails
    alone. Each recipient's outcome is in the result (and, between attempts, in the next
    attempt's payload, so that a retry sends only to those not delivered yet).
    """
    outcomes = dict(outcomes or {})
    waiting = [
        r for r in dict.fromkeys(to) if outcomes.get(r, {}).get("status") in (None, DEFERRED)
    ]
    settings = get_settings()
    try:
        with email.connection(settings.smtp, settings.mail_dir) as deliver:
            for recipient in waiting:
                message = email.build(settings.smtp.sender, [recipient], subject, body)
                try:
                    deliver(message)
                except smtplib.SMTPRecipientsRefused as exc:
                    code, reason = exc.recipients.get(recipient, (550, b"refused"))
                    status = DEFERRED if 400 <= code < 500 else REFUSED
                    outcomes[recipient] = {"status": status, "error": f"SMTP {code}: {reason!r}"}
                else:
                    outcomes[recipient] = {"status": DELIVERED, "message_id": message["Message-ID"]}
                self.progress(100 * len(outcomes) / len(to), _summary(outcomes, len(to)))
    except (smtplib.SMTPException, OSError) as exc:
        _again(self, to, subject, body, outcomes, f"SMTP server failed: {exc}")
    if any(o["status"] == DEFERRED for o in outcomes.values()):
        _again(self, to, subject, body, outcomes, "some recipients were deferred")
    summary = _summary(outcomes, len(to))
    self.progress(100, summary)
    counts = {s: sum(o["status"] == s for o in outcomes.values()) for s in (DELIVERED, REFUSED)}
    return {"recipients": len(to), **counts, "summary": summary, "outcomes": outcomes}


def _summary(outcomes: dict[str, dict[str, Any]], total: int) -> str:
    counts = {s: sum(o["status"] == s for o in outcomes.values()) for s in (DELIVERED, REFUSED)}
    return f"{counts[DELIVERED]} of {total} delivered, {counts[REFUSED]} refused"


def _again(
    task: ConveyorTask,
    to: list[str],
    subject: str,
    body: str,
    outcomes: dict[str, dict[str, Any]],
    why: str,
) -> None:
    """Retry what is not delivered yet, with the outcomes so far; on the last attempt, the
    error stands (the delivered ones are named in it)."""
    summary = _summary(outcomes, len(to))
    if task.request.retries >= (task.max_retries or 0):
        raise PermanentError(f"{why}; after {task.request.retries + 1} attempts: {summary}")
    countdown = get_exponential_backoff_interval(
        factor=int(task.retry_backoff or 1),
        retries=task.request.retries,
        maximum=int(task.retry_backoff_max),
        full_jitter=True,
    )
    raise task.retry(
        exc=TransientError(f"{why}: {summary}"),
        kwargs={"to": to, "subject": subject, "body": body, "outcomes": outcomes},
        countdown=countdown,
    )
