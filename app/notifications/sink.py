"""The local mail sink: each mail sent without an SMTP host, as a ``.eml`` file.

:func:`app.notifications.email.connection` writes them (``<embedded.data_dir>/mail``);
this module reads them back for the console's Mail page, newest first. A name is a
plain file name of that directory; anything else is refused, never opened.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

#: A sink file's name: what ``connection`` writes (a Message-ID made safe), nothing else.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,200}\.eml")


class NotInSink(LookupError):
    """No such mail in the sink (or a name that cannot be one); names it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no mail named {name!r} in the mail sink")


@dataclass(frozen=True)
class Mail:
    """One mail of the sink."""

    name: str
    at: datetime
    size_bytes: int
    message: EmailMessage
    path: Path

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def to(self) -> str:
        return str(self.message.get("To", ""))

    @property
    def sender(self) -> str:
        return str(self.message.get("From", ""))

    def text(self) -> str:
        """The plain-text body ('' if it has none)."""
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content())

    def html(self) -> str | None:
        """The HTML body, if it has one."""
        part = self.message.get_body(preferencelist=("html",))
        return None if part is None else str(part.get_content())

    def raw(self) -> bytes:
        """The mail's bytes, as sent."""
        return self.path.read_bytes()

    def attachments(self) -> list[tuple[str, str, int]]:
        """Each attached file: its name, content type and size in bytes."""
        return [
            (
                part.get_filename() or "unnamed",
                part.get_content_type(),
                len(part.get_payload(decode=True) or b""),
            )
            for part in self.message.iter_attachments()
        ]


def _read(path: Path) -> Mail:
    with path.open("rb") as file:
        message = email.message_from_binary_file(file, policy=email.policy.default)
    stat = path.stat()
    return Mail(
        name=path.name,
        at=datetime.fromtimestamp(stat.st_mtime, UTC),
        size_bytes=stat.st_size,
        message=message,  # policy.default makes an EmailMessage
        path=path,
    )


def mails(directory: Path, limit: int = 200) -> list[Mail]:
    """The newest ``limit`` mails of the sink, newest first (none if it does not exist)."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and NAME.fullmatch(p.name)]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [_read(path) for path in files[:limit]]


def mail(directory: Path, name: str) -> Mail:
    """The mail named ``name``; :class:`NotInSink` when there is none or the name is not
    a sink file's name."""
    if not NAME.fullmatch(name):
        raise NotInSink(name)
    path = directory / name
    if not path.is_file():
        raise NotInSink(name)
    return _read(path)
