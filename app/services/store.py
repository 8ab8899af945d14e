"""Every statement on the ``services`` table, named; one row per service and host.

The runtime writes a service's whole row each time (:func:`save`): when its state
changes and with every heartbeat. A write by a process other than the one that
started the row is refused (two processes given one host name would otherwise take
turns on it), except the start's own write, which takes the row over. The API,
``/health/ready`` and the console read the rows with :func:`rows`, which adds
whether each is alive (heard from lately) and active (a singleton's lease holder, or
an every-host service running). Singletons' leases are :mod:`app.lease`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from app import lease
from app.services.base import LEASE_PREFIX, Mode
from app.services.states import ServiceState

#: Columns the runtime writes (``heartbeat_at`` is the database's ``now()``).
COLUMNS = (
    "name",
    "host",
    "mode",
    "state",
    "pid",
    "identity",
    "started_at",
    "last_success_at",
    "last_error",
    "last_error_at",
    "consecutive_errors",
    "items_processed",
    "detail",
)

#: -- save_service -- insert or update one service's row on one host; a row another
#: process wrote is only taken over with ``:takeover`` (returns nothing then).
SAVE = text(f"""
INSERT INTO services AS s ({", ".join(COLUMNS)}, heartbeat_at)
VALUES (:name, :host, :mode, :state, :pid, :identity, :started_at, :last_success_at,
    :last_error, :last_error_at, :consecutive_errors, :items_processed,
    CAST(:detail AS jsonb), now())
ON CONFLICT (name, host) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[2:])},
    heartbeat_at = now()
WHERE :takeover OR s.identity IS NOT DISTINCT FROM EXCLUDED.identity
RETURNING 1
""")
#: -- forget_services -- delete the rows not heard from for ``:days`` days.
FORGET = text("""
DELETE FROM services WHERE heartbeat_at < now() - make_interval(days => :days)
""")
#: -- list_services -- every row, with ``alive`` when heard from within ``:fresh`` seconds.
LIST = text("""
SELECT name, host, mode, state, pid, identity, started_at, heartbeat_at, last_success_at,
    last_error, last_error_at, consecutive_errors, items_processed, detail,
    heartbeat_at > now() - make_interval(secs => :fresh) AS alive
FROM services ORDER BY name, host
""")

#: -- bound_reads -- the statements after it in the transaction give up past ``:ms``
#: milliseconds (0: never).
BOUND_READS = text("SELECT set_config('statement_timeout', CAST(:ms AS text), true)")
#: -- service_figures -- each row's state and counters, for ``/metrics``.
FIGURES = text("""
SELECT name, host, state, items_processed, consecutive_errors
FROM services ORDER BY name, host
""")

#: States in which an every-host service that is alive is doing its work.
ACTIVE = (ServiceState.RUNNING, ServiceState.DEGRADED)


@dataclass(frozen=True)
class ServiceFigures:
    """One row's state and counters, as ``/metrics`` reports them."""

    name: str
    host: str
    state: str
    #: Items its iterations reported since its process started it.
    items_processed: int
    #: Errors since its last success.
    consecutive_errors: int


def lease_name(service: str) -> str:
    """The name of a singleton's lease."""
    return f"{LEASE_PREFIX}{service}"


def save(conn: Connection, row: Mapping[str, Any], takeover: bool = False) -> bool:
    """Write one service's row (see :data:`COLUMNS`); False if another process owns it."""
    params = {column: row.get(column) for column in COLUMNS}
    params["detail"] = json.dumps(row.get("detail") or {}, default=str)
    params["takeover"] = takeover
    return conn.execute(SAVE, params).first() is not None


def forget(conn: Connection, days: int) -> int:
    """Delete the rows not heard from for ``days`` days; how many went."""
    return int(conn.execute(FORGET, {"days": days}).rowcount or 0)


def rows(conn: Connection, fresh_s: float) -> list[dict[str, Any]]:
    """Every service row (by name, then host), each with ``alive`` (a heartbeat within
    ``fresh_s``), ``holder`` (a singleton's lease holder now, or None) and ``active``."""
    holders = lease.holders(conn, LEASE_PREFIX)
    found = [dict(row) for row in conn.execute(LIST, {"fresh": fresh_s}).mappings()]
    for row in found:
        if row["mode"] == Mode.SINGLETON:
            row["holder"] = holders.get(lease_name(row["name"]))
            row["active"] = row["holder"] is not None and row["holder"] == row["identity"]
        else:
            row["holder"] = None
            row["active"] = bool(row["alive"]) and row["state"] in ACTIVE
    return found


def figures(conn: Connection, timeout_ms: int | None = None) -> list[ServiceFigures]:
    """Every row's state and counters (by name, then host).

    With ``timeout_ms``, PostgreSQL cancels the read past that many milliseconds. The
    bound it sets holds for the rest of ``conn``'s transaction.
    """
    conn.execute(BOUND_READS, {"ms": timeout_ms or 0})
    return [
        ServiceFigures(
            name=row.name,
            host=row.host,
            state=row.state,
            items_processed=int(row.items_processed),
            consecutive_errors=int(row.consecutive_errors),
        )
        for row in conn.execute(FIGURES)
    ]
