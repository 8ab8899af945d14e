"""What ``/health/ready`` makes of the service rows (pure).

A service is **down** when one of its rows is ``failed`` and nothing runs it now: for
a singleton, no host holds its lease; for an every-host service, no host that was
heard from lately runs it. Readiness turns red for a down service. A failed row
beside a live holder (another host took the singleton over, the other hosts run it)
does not. A **degraded** service (recent errors, still retrying) is named but
leaves readiness green, and so is a **silent** row: one that is neither stopped nor
failed but was not heard from lately (its process was killed, or cannot reach the
database).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.services.base import Mode
from app.services.states import FINAL, ServiceState


@dataclass(frozen=True)
class Verdict:
    """The services readiness is about."""

    #: Down services: name → why.
    down: dict[str, str] = field(default_factory=dict)
    #: Degraded services, as ``name@host``.
    degraded: list[str] = field(default_factory=list)
    #: Rows neither stopped nor failed whose heartbeat is old, as ``name@host``.
    silent: list[str] = field(default_factory=list)


def judge(rows: Iterable[Mapping[str, Any]]) -> Verdict:
    """The verdict on rows as :func:`app.services.store.rows` reads them."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    verdict = Verdict()
    for name, group in sorted(by_name.items()):
        failed_on = [row["host"] for row in group if row["state"] == ServiceState.FAILED]
        if group[0]["mode"] == Mode.SINGLETON:
            running = any(row.get("holder") for row in group)
            nobody = "no host holds its lease"
        else:
            running = any(row.get("active") for row in group)
            nobody = "no live host runs it"
        if failed_on and not running:
            verdict.down[name] = f"failed on {', '.join(failed_on)}, and {nobody}"
        for row in group:
            where = f"{name}@{row['host']}"
            if row["state"] == ServiceState.DEGRADED and row.get("alive"):
                verdict.degraded.append(where)
            elif row["state"] not in FINAL and not row.get("alive"):
                verdict.silent.append(where)
    return verdict
