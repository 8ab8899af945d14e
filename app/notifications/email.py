"""Email over SMTP; without an SMTP host, each mail is written to ``var/outbox``."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from config.settings import SmtpSettings


def build(sender: str, to: list[str], subject: str, body: str) -> EmailMessage:
    """A plain-text message with a fresh Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="conveyor.local")
    message.set_content(body)
    return message


def send(smtp: SmtpSettings, outbox: Path, to: list[str], subject: str, body: str) -> str:
    """Deliver one mail and return its Message-ID.

    Raises ``smtplib.SMTPException`` or ``OSError`` when the server refuses or is
    unreachable; callers decide whether that is worth a retry.
    """
    message = build(smtp.sender, to, subject, body)
    message_id = str(message["Message-ID"])
    if smtp.host is None:
        outbox.mkdir(parents=True, exist_ok=True)
        name = message_id.strip("<>").replace("@", "_") + ".eml"
        (outbox / name).write_bytes(bytes(message))
        return message_id
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
        if smtp.use_tls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(message)
    return message_id
