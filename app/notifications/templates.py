"""Mail from templates: a subject, a plain-text body and an HTML body per notification.

Each notification ``name`` is two Jinja templates in ``templates/``: ``<name>.txt``,
whose ``subject`` block is the subject and whose ``body`` block is the text, and
``<name>.html``, the HTML alternative (autoescaped). Both extend a layout
(``_layout.txt``, ``_layout.html``) that adds the footer. A template of the same name
in ``notifications.templates_dir`` replaces the built-in one, so a team can reword or
rebrand any mail without a code change. A variable the template names but the caller
does not give is an error, not an empty string.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)

from app.notifications import email
from config.settings import get_settings

#: The built-in templates.
BUILTIN = Path(__file__).parent / "templates"
#: Where a job's page is in the console, after ``web.base_url``.
CONSOLE_JOB_PATH = "/console/web/job/{id}/change/"


@dataclass(frozen=True)
class Rendered:
    """One notification, rendered."""

    subject: str
    text: str
    html: str

    def message(self, to: list[str]) -> EmailMessage:
        """A message from the settings' sender to ``to``: the text, with the HTML as its
        alternative."""
        return email.build_rich(get_settings().smtp.sender, to, self.subject, self.text, self.html)


@functools.cache
def environment(custom: Path | None) -> Environment:
    """The templates, those in ``custom`` (if given) before the built-in ones."""
    loaders: list[BaseLoader] = [FileSystemLoader(BUILTIN)]
    if custom is not None:
        loaders.insert(0, FileSystemLoader(custom))
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(["html"], default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, **context: Any) -> Rendered:
    """The notification ``name`` rendered with ``context`` (plus ``base_url``, the web
    process's address); ``LookupError`` naming the template if it has no subject."""
    settings = get_settings()
    env = environment(settings.notifications.templates_dir)
    context = {"base_url": settings.web.base_url, **context}
    text = env.get_template(f"{name}.txt")
    subject_block = text.blocks.get("subject")
    if subject_block is None:
        raise LookupError(f"template {name}.txt defines no {{% block subject %}}")
    subject = " ".join("".join(subject_block(text.new_context(context))).split())
    return Rendered(
        subject=subject,
        text=text.render(context),
        html=env.get_template(f"{name}.html").render(context),
    )


def console_job_url(job_id: object) -> str:
    """The address of a job's page in the console."""
    return get_settings().web.base_url + CONSOLE_JOB_PATH.format(id=job_id)
