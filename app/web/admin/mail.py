"""The console's Mail page: what was sent into the local mail sink, to read it.

Without an SMTP host (``smtp.host`` unset) every mail is a ``.eml`` file under
``<embedded.data_dir>/mail`` (:mod:`app.notifications.sink`). Outside the production
profile the console lists them, newest first, and shows each: its headers, its text,
its HTML (in a sandboxed frame that runs no script and loads nothing) and its
attachments. With an SMTP host, or in production, the page does not exist.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from app.notifications import sink
from app.web.admin.overview import mail_sink as enabled
from config.settings import get_settings


def _context(request: HttpRequest, title: str) -> dict[str, object]:
    return {**admin.site.each_context(request), "title": title, "mail_dir": sink_dir()}


def sink_dir() -> str:
    return str(get_settings().mail_dir)


def _sink() -> Path:
    """The sink's directory; 404 when mail goes to an SMTP server (or in production)."""
    if not enabled():
        raise Http404("mail goes to an SMTP server, not to the mail sink")
    return get_settings().mail_dir


def _mail(name: str) -> sink.Mail:
    """The sink's mail ``name``; 404 naming it when there is none."""
    try:
        return sink.mail(_sink(), name)
    except sink.NotInSink as exc:
        raise Http404(str(exc)) from None


def inbox(request: HttpRequest) -> HttpResponse:
    """The newest mails of the sink."""
    found = sink.mails(_sink())
    return TemplateResponse(
        request, "admin/web/mail_list.html", {**_context(request, "Mail"), "mails": found}
    )


def message(request: HttpRequest, name: str) -> HttpResponse:
    """One mail of the sink."""
    found = _mail(name)
    return TemplateResponse(
        request,
        "admin/web/mail_detail.html",
        {**_context(request, found.subject or name), "mail": found},
    )


def raw(request: HttpRequest, name: str) -> HttpResponse:
    """The mail as it was sent, as a ``.eml`` download."""
    response = HttpResponse(_mail(name).raw(), content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
