"""Alert notifications, one job per channel: ``alerts.email`` and ``alerts.webhook``.

:func:`app.services.alerts.raise_alert` enqueues them by name with the alert's id and
the event (``firing`` or ``resolved``); they read the alert, the recipients and the
webhook URL when they run. Both retry under every task's policy (``TransientError``
with backoff and jitter, ``worker.max_retries`` times): an SMTP 4xx or an unreachable
server, a webhook's 5xx, 3xx, 408 or 429 or a connection error. An SMTP 5xx or a
webhook's other 4xx (a wrong URL, a revoked token) is a ``PermanentError``: the job is
dead at once, its error naming the status, and an operator requeues it after the fix.

Routed to ``default`` (``ROUTES`` in app/celery.py), not ``emails``: a worker serves
its queues in order and ``emails`` comes late, so bulk mail or a backlog elsewhere
would hold back the very alert about it.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from app.celery import app
from app.errors import PermanentError, TransientError
from app.notifications import email
from app.services import alerts
from config.settings import get_settings

#: 4xx answers worth another try: the receiver timed out (408) or throttles (429).
RETRIED_4XX = frozenset({408, 429})


class AlertNotice(BaseModel):
    """Which alert to notify about, and what happened to it."""

    alert_id: int = Field(ge=1)
    event: alerts.Event = alerts.Event.FIRING


@app.task(name="alerts.email", payload_model=AlertNotice)
def mail(alert_id: int, event: str = alerts.Event.FIRING) -> str:
    """Mail the alert to ``alerts.email_to`` through SMTP; return the Message-ID."""
    alert, happened = _load(alert_id, event)
    recipients = get_settings().alerts.email_to
    if not recipients:
        return "skipped: alerts.email_to is empty"
    return email.deliver(alerts.email(alert, happened).message(list(recipients)))


@app.task(name="alerts.webhook", payload_model=AlertNotice)
def webhook(alert_id: int, event: str = alerts.Event.FIRING) -> str:
    """POST the alert as Slack-compatible JSON to ``alerts.webhook_url``."""
    alert, happened = _load(alert_id, event)
    settings = get_settings().alerts
    if not settings.webhook_url:
        return "skipped: alerts.webhook_url is unset"
    status = post_json(
        settings.webhook_url, alerts.slack_body(alert, happened), settings.webhook_timeout_s
    )
    return f"HTTP {status}"


def refused(status: int) -> bool:
    """True when a webhook's answer ``status`` says no retry can help (4xx but 408, 429)."""
    return 400 <= status < 500 and status not in RETRIED_4XX


def origin(url: str) -> str:
    """The URL's scheme and host only: a webhook's path is often its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class _Unredirected(urllib.request.HTTPRedirectHandler):
    """A 3xx is the receiver's answer, not a hop (urllib would re-send a POST as a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_Unredirected)


def post_json(url: str, body: dict[str, Any], timeout_s: float) -> int:
    """POST ``body`` as JSON and return the 2xx status; ``PermanentError`` for a refusal
    (:func:`refused`), ``TransientError`` for any other answer or no answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "Conveyor-alerts/1"},
    )
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        answer = exc.read(300).decode(errors="replace").strip()
        message = f"webhook {origin(url)} answered HTTP {exc.code} {exc.reason}: {answer!r}"
        if refused(exc.code):
            raise PermanentError(message) from None
        raise TransientError(message) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientError(f"webhook {origin(url)} unreachable: {reason}") from exc


def _load(alert_id: int, event: str) -> tuple[alerts.Alert, alerts.Event]:
    try:
        notice = AlertNotice(alert_id=alert_id, event=event)  # type: ignore[arg-type]
    except ValueError as exc:
        raise PermanentError(f"invalid alert notice: {exc}") from exc
    alert = alerts.get_alert(notice.alert_id)
    if alert is None:
        raise PermanentError(f"alert {notice.alert_id} does not exist")
    return alert, notice.event
