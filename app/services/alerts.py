"""Durable, deduplicated alerts, notified by email and webhook as Conveyor jobs.

A monitor calls :func:`raise_alert` each time it sees a condition, under a key that
names the condition (``queue.default.backlog``). The first call opens the alert of
that key and notifies; later calls count the sighting (``count``, ``last_seen_at``)
and notify again only once ``alerts.cooldown_s`` has passed since the last
notification. :func:`resolve_alert` closes it (and notifies once, with
``alerts.notify_resolved``); a later raise opens a new alert for the key.

The decision is PostgreSQL's (:mod:`app.services.alert_store`): the upsert locks the
open row, and the notification is claimed on that row in the same transaction, so
two monitors on two hosts raising a key at the same instant notify once. Each
notification is a job per channel, enqueued by name in that transaction
(``JobService.enqueue(..., connection=…)``): it exists if and only if the alert's
new state commits, and the releaser publishes it within a second. The jobs carry the
alert's id, not its text: they read the alert, the recipients and the webhook URL
when they run, so a job requeued after a fix of the settings uses the fix, and the
URL (often a secret) never sits in the ledger.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection

from app.db import engine
from app.errors import ConveyorError
from app.jobs.service import JobService
from app.notifications import templates
from app.notifications.templates import Rendered
from app.services import alert_store
from config.settings import AlertSettings, get_settings


class Severity(StrEnum):
    """How urgent an alert is, least urgent first."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Event(StrEnum):
    """What a notification says happened to its alert."""

    FIRING = "firing"  #: opened, or still open after its cooldown
    RESOLVED = "resolved"  #: closed by ``resolve_alert``


#: The delivery tasks (tasks/alerts.py), by name: app.services never imports tasks.
EMAIL_TASK = "alerts.email"
WEBHOOK_TASK = "alerts.webhook"
#: Longest key and subject (the columns' widths).
MAX_KEY = MAX_SUBJECT = 300
#: Longest detail kept; a longer one is cut (a monitor's traceback is no reason to fail).
MAX_DETAIL = 20_000
#: The ``state`` filter of :func:`page`.
STATES = ("open", "resolved", "all")


class InvalidAlert(ConveyorError, ValueError):
    """An alert that cannot be recorded; names the argument and why."""

    def __init__(self, argument: str, reason: str) -> None:
        self.argument = argument
        super().__init__(f"alert {argument} is invalid: {reason}")


@dataclass(frozen=True)
class Alert:
    """One alert as recorded: open while ``resolved_at`` is None."""

    id: int
    key: str
    severity: str
    subject: str
    detail: str
    first_seen_at: datetime
    last_seen_at: datetime
    #: Sightings while open, the first included.
    count: int
    #: When a notification was last enqueued (None: never, e.g. no channel configured).
    last_notified_at: datetime | None
    resolved_at: datetime | None
    #: What the resolver said.
    resolution: str | None
    labels: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Alert:
        """The alert of a row of ``alerts`` (extra columns ignored)."""
        return cls(**{field.name: row[field.name] for field in fields(cls)})

    @property
    def is_open(self) -> bool:
        """True until resolved."""
        return self.resolved_at is None

    def as_json(self) -> dict[str, Any]:
        """The alert as JSON values (times in ISO 8601)."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in asdict(self).items()
        }


@dataclass(frozen=True)
class AlertOutcome:
    """What a raise or a resolve did."""

    alert: Alert
    #: True when this raise opened the alert (no alert of its key was open).
    opened: bool
    #: True when this call enqueued notifications (never while no channel is configured:
    #: the alert then stays un-notified, and notifies on the first raise after one is).
    notified: bool
    #: The delivery jobs enqueued, one per configured channel.
    jobs: tuple[uuid.UUID, ...] = ()


def channels(settings: AlertSettings) -> list[str]:
    """The delivery tasks the settings ask for."""
    return [
        task
        for task, wanted in ((EMAIL_TASK, settings.email_to), (WEBHOOK_TASK, settings.webhook_url))
        if wanted
    ]


def raise_alert(
    key: str,
    severity: Severity | str,
    subject: str,
    detail: str = "",
    labels: dict[str, Any] | None = None,
    *,
    cooldown_s: float | None = None,
) -> AlertOutcome:
    """Record a sighting of ``key`` and notify if it is new or its cooldown has passed.

    ``cooldown_s`` overrides ``alerts.cooldown_s`` for this call. Severity, subject,
    detail and labels (when given) replace the open alert's: it says what was seen last.
    """
    level = _severity(severity)
    _text("key", key, MAX_KEY)
    _text("subject", subject, MAX_SUBJECT)
    if "\x00" in detail:
        raise InvalidAlert("detail", "it contains a NUL character")
    if labels is not None:
        try:
            json.dumps(labels)
        except (TypeError, ValueError) as exc:
            raise InvalidAlert("labels", f"not JSON: {exc}") from None
    settings = get_settings().alerts
    cooldown = settings.cooldown_s if cooldown_s is None else cooldown_s
    if cooldown < 0:
        raise InvalidAlert("cooldown_s", f"{cooldown} is negative")
    wanted = channels(settings)
    with engine().begin() as conn:
        row = alert_store.upsert(
            conn,
            key=key,
            severity=level.value,
            subject=subject,
            detail=detail[:MAX_DETAIL],
            labels=labels,
        )
        opened = bool(row["opened"])
        claimed = alert_store.claim_notification(conn, row["id"], cooldown) if wanted else None
        alert = Alert.from_row(claimed or row)
        jobs = _enqueue(conn, alert, Event.FIRING, wanted) if claimed else ()
    return AlertOutcome(alert, opened, claimed is not None, jobs)


def resolve_alert(key: str, detail: str | None = None) -> AlertOutcome | None:
    """Resolve the open alert of ``key`` (None if none is open), notifying once if it
    notified while open and ``alerts.notify_resolved`` is on."""
    if detail is not None and "\x00" in detail:
        raise InvalidAlert("detail", "it contains a NUL character")
    settings = get_settings().alerts
    with engine().begin() as conn:
        row = alert_store.resolve(conn, key, None if detail is None else detail[:MAX_DETAIL])
        if row is None:
            return None
        alert = Alert.from_row(row)
        wanted = channels(settings) if settings.notify_resolved else []
        notify = bool(wanted) and alert.last_notified_at is not None
        jobs = _enqueue(conn, alert, Event.RESOLVED, wanted) if notify else ()
    return AlertOutcome(alert, False, notify, jobs)


def get_alert(alert_id: int) -> Alert | None:
    """One alert by id, open or resolved."""
    with engine().connect() as conn:
        row = alert_store.get(conn, alert_id)
    return None if row is None else Alert.from_row(row)


def open_alerts() -> list[Alert]:
    """Every open alert, newest first."""
    with engine().connect() as conn:
        return [Alert.from_row(row) for row in alert_store.open_rows(conn)]


@dataclass(frozen=True)
class Condition:
    """Something wrong now, as a monitor found it: the alert it raises."""

    key: str
    severity: Severity
    subject: str
    detail: str
    labels: dict[str, Any] = field(default_factory=dict)


def reconcile(monitor: str, found: Iterable[Condition], resolution: str) -> set[str]:
    """Raise an alert for each condition ``monitor`` found (labelled ``monitor``), and
    resolve, with ``resolution``, the open alerts it raised before that it no longer
    found; the keys firing now. A monitor resolves only its own alerts."""
    found = list(found)
    firing = {condition.key for condition in found}
    for condition in found:
        raise_alert(
            condition.key,
            condition.severity,
            condition.subject,
            condition.detail,
            {**condition.labels, "monitor": monitor},
        )
    for alert in open_alerts():
        if (alert.labels or {}).get("monitor") == monitor and alert.key not in firing:
            resolve_alert(alert.key, resolution)
    return firing


def recent_alerts(limit: int = 50) -> list[Alert]:
    """The ``limit`` alerts seen last, open or resolved."""
    with engine().connect() as conn:
        return [Alert.from_row(row) for row in alert_store.recent(conn, limit)]


def page(
    state: str = "open", limit: int = 50, cursor: str | None = None
) -> tuple[list[Alert], str | None]:
    """A page of alerts in ``state`` (open, resolved or all), newest first, and the cursor
    of the next page (None on the last)."""
    if state not in STATES:
        raise InvalidAlert("state", f"{state!r} is not one of {', '.join(STATES)}")
    before = None if cursor is None else decode_cursor(cursor)
    with engine().connect() as conn:
        rows = [Alert.from_row(row) for row in alert_store.page(conn, state, limit, before)]
    return rows, encode_cursor(rows[-1].id) if len(rows) == limit else None


def firing_counts() -> dict[str, int]:
    """Open alerts by severity, every severity (zeros too)."""
    with engine().connect() as conn:
        found = alert_store.firing(conn)
    return {severity.value: found.get(severity.value, 0) for severity in Severity}


def encode_cursor(alert_id: int) -> str:
    """An opaque cursor for the page after alert ``alert_id``."""
    return base64.urlsafe_b64encode(f"alert:{alert_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The alert id a cursor stands for; :class:`InvalidAlert` naming it when malformed."""
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "alert" and number.isascii() and number.isdigit() and len(number) < 19:
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidAlert("cursor", f"{cursor!r} is not one this API returned")


# notifications: what the delivery tasks send --------------------------------------

#: Attachment colours (Slack's ``color``) by severity, and for a resolution.
COLORS = {"info": "#439fe0", "warning": "#daa038", "critical": "#d00000", "resolved": "#2eb886"}


def headline(alert: Alert, event: Event | str) -> str:
    """``[CRITICAL] subject``, or ``[RESOLVED] subject``: an email's subject, a chat line."""
    tag = "RESOLVED" if event == Event.RESOLVED else alert.severity.upper()
    return f"[{tag}] {alert.subject}"


def facts(alert: Alert) -> list[tuple[str, str]]:
    """The alert's facts as (name, value) lines, labels last."""
    lines = [
        ("key", alert.key),
        ("severity", alert.severity),
        ("seen", f"{alert.count} time{'s' if alert.count != 1 else ''}"),
        ("first seen", alert.first_seen_at.isoformat(timespec="seconds")),
        ("last seen", alert.last_seen_at.isoformat(timespec="seconds")),
    ]
    if alert.resolved_at is not None:
        lines.append(("resolved", alert.resolved_at.isoformat(timespec="seconds")))
    if alert.resolution:
        lines.append(("resolution", alert.resolution))
    lines.extend((str(name), str(value)) for name, value in sorted((alert.labels or {}).items()))
    return lines


def email(alert: Alert, event: Event | str) -> Rendered:
    """The mail of a notification (templates ``alert.txt`` and ``alert.html``)."""
    color = COLORS["resolved" if event == Event.RESOLVED else alert.severity]
    return templates.render(
        "alert",
        alert=alert,
        event=str(event),
        headline=headline(alert, event),
        facts=facts(alert),
        color=color,
    )


def slack_body(alert: Alert, event: Event | str) -> dict[str, Any]:
    """The webhook's JSON: Slack's ``text`` and ``attachments`` (which Mattermost and
    Rocket.Chat read too), plus the alert's fields under ``alert`` for other receivers."""
    color = COLORS["resolved" if event == Event.RESOLVED else alert.severity]
    attachment = {
        "fallback": headline(alert, event),
        "color": color,
        "title": alert.subject,
        "text": (alert.detail or "")[:3000],
        "fields": [
            {"title": name, "value": value, "short": len(value) <= 40}
            for name, value in facts(alert)
        ],
        "footer": "Conveyor",
        "ts": int(alert.last_seen_at.timestamp()),
    }
    return {
        "text": headline(alert, event),
        "attachments": [attachment],
        "alert": {**alert.as_json(), "event": str(event)},
    }


def _enqueue(
    conn: Connection, alert: Alert, event: Event, tasks: list[str]
) -> tuple[uuid.UUID, ...]:
    service = JobService()
    payload = {"alert_id": alert.id, "event": event.value}
    metadata = {"alert_key": alert.key, "alert_id": alert.id, "event": event.value}
    return tuple(
        service.enqueue(task, payload, metadata=metadata, connection=conn) for task in tasks
    )


def _severity(value: Severity | str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        known = ", ".join(s.value for s in Severity)
        raise InvalidAlert("severity", f"{value!r} is not one of {known}") from None


def _text(argument: str, value: str, limit: int) -> None:
    if not value or not value.strip():
        raise InvalidAlert(argument, "it is empty")
    if len(value) > limit:
        raise InvalidAlert(argument, f"it is {len(value)} characters, over {limit}")
    if "\x00" in value:
        raise InvalidAlert(argument, "it contains a NUL character")
