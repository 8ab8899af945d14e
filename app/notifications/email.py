"""Email over SMTP; without an SMTP host, each mail is written to the mail sink, ``var/mail``.

:func:`deliver` is how a job sends a built message: the settings' SMTP server (or the
sink), and its failures sorted for the retry policy (``TransientError`` for a 4xx or an
unreachable server, ``PermanentError`` for a refusal). :func:`connection` keeps one
session open for many messages (bulk mail) and leaves the sorting to its caller.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from app.errors import PermanentError, TransientError
from config.settings import SmtpSettings, get_settings


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
def connection(smtp: SmtpSettings, sink: Path) -> Iterator[Callable[[EmailMessage], None]]:
    """A sender of messages over one SMTP session (or into the ``sink`` directory, one
    ``.eml`` file each, without a host).

    Sending raises ``smtplib.SMTPRecipientsRefused`` when the server refuses every
    recipient of a message (the session stays usable), and other
    ``smtplib.SMTPException`` or ``OSError`` when it fails.
    """
    if smtp.host is None:

        def write(message: EmailMessage) -> None:
            sink.mkdir(parents=True, exist_ok=True)
            name = str(message["Message-ID"]).strip("<>").replace("@", "_") + ".eml"
            (sink / name).write_bytes(bytes(message))

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


def deliver(message: EmailMessage) -> str:
    """Send a built message (:func:`build`, :func:`build_rich`) through the settings' SMTP
    server, or into the mail sink without one; its Message-ID.

    A 4xx answer or an unreachable server raises ``TransientError`` (worth a retry), a
    5xx or every recipient refused ``PermanentError``, each naming the server's answer.
    """
    settings = get_settings()
    try:
        with connection(settings.smtp, settings.mail_dir) as send:
            send(message)
    except smtplib.SMTPRecipientsRefused as exc:
        refusal = f"SMTP refused every recipient: {exc.recipients!r}"
        if all(400 <= code < 500 for code, _ in exc.recipients.values()):
            raise TransientError(refusal) from exc  # each only for now
        raise PermanentError(refusal) from exc
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:  # the server asks us to come back later
            raise TransientError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        raise PermanentError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientError(f"SMTP server unreachable: {exc}") from exc
    return str(message["Message-ID"])
