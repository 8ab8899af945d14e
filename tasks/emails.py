"""Email delivery on the ``emails`` queue."""

from __future__ import annotations

import smtplib

from pydantic import BaseModel, Field

from app.celery import app
from app.errors import PermanentError, TransientError
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
    try:
        return email.send(
            settings.smtp,
            settings.embedded.data_dir / "outbox",
            payload.to,
            payload.subject,
            payload.body,
        )
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:  # 4xx: the server asks us to come back later
            raise TransientError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        raise PermanentError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
        raise TransientError(f"SMTP server unreachable: {exc}") from exc
