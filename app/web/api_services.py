"""``/services``: the services runtime's services on every host, beside beat and the workers.

One row per service and host, as the runtime last wrote it (:mod:`app.services.store`):
its state, its last success and error, its errors in a row, the items it processed,
its heartbeat, and whether it is alive (heard from within three heartbeats) and
active (a singleton's lease holder, or an every-host service that runs). The beat
leader, the beats and the workers' heartbeats are the same as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema

from app.db import engine
from app.services import store
from app.web import api_operations
from app.web.api_auth import needs
from app.web.api_schemas import errors
from app.web.health import service_freshness_s

router = Router(tags=["operations"])

ServiceMode = Literal["every_host", "singleton"]
ServiceStateName = Literal["running", "degraded", "failed", "stopped", "standby"]


class ServiceOut(Schema):
    """One service on one host, as its process last wrote it."""

    name: str
    host: str
    mode: ServiceMode
    state: ServiceStateName
    alive: bool = Field(description="its process wrote the row within three heartbeats")
    active: bool = Field(
        description="doing its work now: a singleton holding its lease, or an every-host "
        "service that is alive and running or degraded"
    )
    holder: str | None = Field(
        description="a singleton's lease holder now (host:pid:tag), on whichever host"
    )
    pid: int | None
    started_at: datetime
    heartbeat_at: datetime
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_errors: int
    items_processed: int = Field(description="items its iterations processed since it started")
    detail: dict[str, Any] = Field(
        description="its loop (kind, every_s or idle_s), a running iteration's start, why it "
        "stopped, and what the service itself reports"
    )


class ServicesOut(api_operations.ProcessesOut):
    """The services runtime's services, the beat leader, every beat and every worker."""

    services: list[ServiceOut]


@router.get("/services", response={200: ServicesOut, **errors()}, **needs("read"))
def services(request: HttpRequest) -> dict[str, Any]:
    """Every service of the services runtime on every host (state, last success and error,
    errors in a row, items, heartbeat), the beat leader, every beat process and every
    worker, with their last sign of life."""
    with engine().connect() as conn:
        rows = store.rows(conn, service_freshness_s())
    for row in rows:
        row["detail"] = row["detail"] or {}
    return {**api_operations.processes(), "services": rows}
