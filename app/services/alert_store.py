"""Every statement on the ``alerts`` table, named, and the functions that run them.

As the ledger keeps its SQL in :mod:`app.jobs.store.queries`, the alerts keep theirs
here: each statement is a constant with a line saying what it does, in psycopg's
``%(name)s`` style, run through SQLAlchemy's ``exec_driver_sql`` on the caller's
connection (so one transaction spans the upsert, the cooldown decision and the
delivery jobs it enqueues). Times are the database's ``now()``, never a host's clock:
monitors on hosts whose clocks disagree still share one cooldown. Migrations aside
(``0006_alerts``), no other module writes SQL on this table; the console's Django
model is a read-only view of it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

#: Every column, in the order :class:`app.services.alerts.Alert` declares them.
COLUMNS = (
    "id, key, severity, subject, detail, first_seen_at, last_seen_at, count, "
    "last_notified_at, resolved_at, resolution, labels"
)

#: -- raise_alert --: open the alert of ``key``, or count one more sighting of the open one
#: (the row stays locked until the caller's transaction ends). Two raisers of a new key
#: meet at the unique index of open keys: the second waits for the first and counts.
RAISE = f"""
INSERT INTO alerts AS a (key, severity, subject, detail, first_seen_at, last_seen_at, count,
                         labels)
VALUES (%(key)s, %(severity)s, %(subject)s, %(detail)s, now(), now(), 1, %(labels)s::jsonb)
ON CONFLICT (key) WHERE resolved_at IS NULL DO UPDATE SET
    severity = EXCLUDED.severity,
    subject = EXCLUDED.subject,
    detail = EXCLUDED.detail,
    labels = coalesce(EXCLUDED.labels, a.labels),
    last_seen_at = greatest(a.last_seen_at, now()),
    count = a.count + 1
RETURNING {COLUMNS}, (xmax = 0) AS opened
"""
#: -- claim_notification --: the alert notifies now unless it did within ``cooldown`` seconds;
#: a row back means notify. Run after RAISE in its transaction, on the row it locked, so
#: the decision cannot interleave with another raiser's.
CLAIM_NOTIFICATION = f"""
UPDATE alerts SET last_notified_at = now()
WHERE id = %(id)s
  AND (last_notified_at IS NULL
       OR last_notified_at <= now() - make_interval(secs => %(cooldown)s))
RETURNING {COLUMNS}
"""
#: -- resolve_alert --: close the open alert of ``key``; a row back only for the one caller
#: that closed it (a second resolver waits on the row, then finds it resolved).
RESOLVE = f"""
UPDATE alerts SET resolved_at = now(), resolution = %(resolution)s
WHERE key = %(key)s AND resolved_at IS NULL
RETURNING {COLUMNS}
"""
#: -- get_alert --: one alert by id.
GET = f"SELECT {COLUMNS} FROM alerts WHERE id = %(id)s"
#: -- open_alerts --: every open alert, newest first.
OPEN = f"SELECT {COLUMNS} FROM alerts WHERE resolved_at IS NULL ORDER BY id DESC"
#: -- recent_alerts --: the ``limit`` alerts seen last, open or resolved.
RECENT = f"""
SELECT {COLUMNS} FROM alerts ORDER BY last_seen_at DESC, id DESC LIMIT %(limit)s
"""
#: -- alert_page --: alerts in ``state`` (open, resolved or all) older than ``before`` (an id;
#: NULL: from the newest), newest first, ``limit`` of them. Ids only grow, so a page
#: boundary stays put while alerts are raised and resolved.
PAGE = f"""
SELECT {COLUMNS} FROM alerts
WHERE (%(state)s::text = 'all' OR (resolved_at IS NULL) = (%(state)s::text = 'open'))
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s
"""
#: -- firing_counts --: open alerts by severity.
FIRING = "SELECT severity, count(*) FROM alerts WHERE resolved_at IS NULL GROUP BY severity"


def upsert(
    conn: Connection,
    *,
    key: str,
    severity: str,
    subject: str,
    detail: str,
    labels: dict[str, Any] | None,
) -> dict[str, Any]:
    """The open alert of ``key`` after this sighting, with ``opened`` (True: it is new)."""
    params = {
        "key": key,
        "severity": severity,
        "subject": subject,
        "detail": detail,
        "labels": None if labels is None else json.dumps(labels),
    }
    row = conn.exec_driver_sql(RAISE, params).mappings().one()
    return dict(row)


def claim_notification(conn: Connection, alert_id: int, cooldown_s: float) -> dict[str, Any] | None:
    """The alert stamped notified now, or None if it was notified within ``cooldown_s``."""
    params = {"id": alert_id, "cooldown": cooldown_s}
    row = conn.exec_driver_sql(CLAIM_NOTIFICATION, params).mappings().first()
    return None if row is None else dict(row)


def resolve(conn: Connection, key: str, resolution: str | None) -> dict[str, Any] | None:
    """The alert of ``key`` just resolved, or None if none was open."""
    params = {"key": key, "resolution": resolution}
    row = conn.exec_driver_sql(RESOLVE, params).mappings().first()
    return None if row is None else dict(row)


def get(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    """One alert, or None."""
    row = conn.exec_driver_sql(GET, {"id": alert_id}).mappings().first()
    return None if row is None else dict(row)


def open_rows(conn: Connection) -> list[dict[str, Any]]:
    """Every open alert, newest first."""
    return [dict(row) for row in conn.exec_driver_sql(OPEN).mappings()]


def recent(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` alerts seen last."""
    return [dict(row) for row in conn.exec_driver_sql(RECENT, {"limit": limit}).mappings()]


def page(conn: Connection, state: str, limit: int, before: int | None) -> list[dict[str, Any]]:
    """Alerts in ``state`` (``open``, ``resolved``, ``all``) with ids below ``before``."""
    params = {"state": state, "limit": limit, "before": before}
    return [dict(row) for row in conn.exec_driver_sql(PAGE, params).mappings()]


def firing(conn: Connection) -> dict[str, int]:
    """Open alerts by severity (only the severities that have some)."""
    return {str(severity): int(count) for severity, count in conn.exec_driver_sql(FIRING)}
