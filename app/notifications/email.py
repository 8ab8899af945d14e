"""Email over SMTP; without an SMTP host, each mail is written to ``var/outbox``."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


#: One attached file: its name, its content type (``text/csv``) and its bytes.
Attachment = tuple[str, str, bytes]


def build_rich(
    sender: str,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    """A message with a plain-text body, an HTML alternative if given (mail clients show
    the richest they can) and attached files, with a fresh Message-ID."""
    message = build(sender, to, subject, text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename
        )
    return message


@contextmanager
def connection(smtp: SmtpSettings, outbox: Path) -> Iterator[Callable[[EmailMessage], None]]:
    """A sender of messages over one SMTP session (or into ``outbox`` without a host).

    Sending raises ``smtplib.SMTPRecipientsRefused`` when the server refuses every
    recipient of a message (the session stays usable), and other
    ``smtplib.SMTPException`` or ``OSError`` when it fails.
    """
    if smtp.host is None:

        def write(message: EmailMessage) -> None:
            outbox.mkdir(parents=True, exist_ok=True)
            name = str(message["Message-ID"]).strip("<>").replace("@", "_") + ".eml"
            (outbox / name).write_bytes(bytes(message))

        yield write
        return
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
        if smtp.use_tls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")

        def deliver(message: EmailMessage) -> None:
            client.send_message(message)

        yield deliver


def send(smtp: SmtpSettings, outbox: Path, to: list[str], subject: str, body: str) -> str:
    """Deliver one mail and return its Message-ID.

    Raises ``smtplib.SMTPException`` or ``OSError`` when the server refuses or is
    unreachable; callers decide whether that is worth a retry.
    """
    return send_message(smtp, outbox, build(smtp.sender, to, subject, body))


def send_message(smtp: SmtpSettings, outbox: Path, message: EmailMessage) -> str:
    """Deliver a built message (see :func:`build_rich`) and return its Message-ID; raises
    as :func:`send` does."""
    with connection(smtp, outbox) as deliver:
        deliver(message)
    return str(message["Message-ID"])
