"""``/workers``, ``/queues`` and ``/stats``: what runs and how much waits; and the beats and
workers that :mod:`app.web.api_services` lists in ``/services``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.jobs import statistics
from app.jobs.store import counts
from app.jobs.store import workers as worker_rows
from app.web.api_auth import needs
from app.web.api_errors import ApiError
from app.web.api_schemas import errors
from config.settings import QUEUES, get_settings

router = Router(tags=["operations"])

#: Seconds a worker waits to answer ``/workers``.
INSPECT_TIMEOUT_S = 1.0


class WorkerOut(Schema):
    """A worker, as it answers now and as its heartbeat says."""

    hostname: str
    alive: bool = Field(description="answered within a second")
    queues: list[str]
    active: int = Field(description="tasks running now")
    active_jobs: list[str]
    processed: int = Field(description="tasks done since it started")
    pid: int | None
    started_at: datetime | None
    last_seen: datetime | None = Field(description="last heartbeat")


class QueueOut(Schema):
    """A queue's depth and the live workers that consume it."""

    name: str
    depth: int
    consumers: list[str]


class BeatInstanceOut(Schema):
    """A beat process."""

    identity: str
    started_at: datetime
    last_tick_at: datetime
    leader: bool
    alive: bool
    last_error: str


class LeaderOut(Schema):
    """The beat that holds the lease."""

    holder: str
    since: datetime
    renewed_at: datetime
    expires_at: datetime


class HeartbeatOut(Schema):
    """A worker's last heartbeat."""

    hostname: str
    pid: int
    queues: list[str]
    started_at: datetime
    last_seen: datetime
    rss_bytes: int | None = Field(
        description="resident memory of its largest process (main or pool child) then"
    )
    alive: bool


class ProcessesOut(Schema):
    """The beat leader, the beats and the workers, with their last sign of life."""

    beat_leader: LeaderOut | None
    beats: list[BeatInstanceOut]
    workers: list[HeartbeatOut]


class StatsOut(Schema):
    """Jobs created in the window, by state, handler and queue; unfinished ones now."""

    hours: int
    since: datetime
    generated_at: datetime = Field(
        description="when these counts were taken: now, or by the hourly statistics run "
        "whose cached result answered (while younger than cache.stats_ttl_s)"
    )
    total: int
    by_status: dict[str, int]
    by_handler: dict[str, int]
    by_queue: dict[str, int]
    unfinished: dict[str, int]


BEATS = text(
    "SELECT identity, started_at, last_tick_at, leader, last_error "
    "FROM conveyor_beat_instance ORDER BY identity"
)
LEASE = text(
    "SELECT holder, acquired_at AS since, renewed_at, expires_at FROM conveyor_beat_lease "
    "WHERE name = 'beat' AND expires_at > now()"
)


def heartbeats() -> list[dict[str, Any]]:
    """Each worker's last heartbeat, with ``alive`` when it is recent."""
    fresh = datetime.now(UTC) - timedelta(seconds=3 * get_settings().ledger.heartbeat_interval_s)
    with engine().connect() as conn:
        rows = worker_rows.heartbeats(conn)
    for row in rows:
        row["queues"] = [q for q in (row["queues"] or "").split(",") if q]
        row["alive"] = row["last_seen"] >= fresh
    return rows


def _broker_up() -> None:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # any failure to reach the broker is the same answer
        raise ApiError(503, "broker_unavailable", f"the broker is unreachable: {exc}") from None


@router.get("/workers", response={200: list[WorkerOut], **errors(503)}, **needs("read"))
def workers(request: HttpRequest) -> list[dict[str, Any]]:
    """Workers that answer now (queues, running and processed tasks), and silent ones
    that still have a heartbeat row."""
    _broker_up()
    beats = {row["hostname"]: row for row in heartbeats()}
    expected = sum(1 for row in beats.values() if row["alive"]) or None
    # With the number of live workers known, replies end the wait instead of the timeout;
    # the later questions go only to the workers that answered the first.
    control = app.control
    queues: dict[str, Any] = (
        control.inspect(timeout=INSPECT_TIMEOUT_S, limit=expected).active_queues() or {}
    )
    active: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    if queues:
        asked = control.inspect(list(queues), timeout=INSPECT_TIMEOUT_S, limit=len(queues))
        active = asked.active() or {}
        stats = asked.stats() or {}
    out = []
    for hostname in sorted(set(queues) | set(active) | set(stats) | set(beats)):
        beat: dict[str, Any] = beats.get(hostname, {})
        running = active.get(hostname) or []
        out.append(
            {
                "hostname": hostname,
                "alive": hostname in queues or hostname in stats,
                "queues": [q["name"] for q in queues.get(hostname, [])] or beat.get("queues", []),
                "active": len(running),
                "active_jobs": [str(task.get("id")) for task in running],
                "processed": sum((stats.get(hostname) or {}).get("total", {}).values()),
                "pid": (stats.get(hostname) or {}).get("pid") or beat.get("pid"),
                "started_at": beat.get("started_at"),
                "last_seen": beat.get("last_seen"),
            }
        )
    return out


@router.get("/queues", response={200: list[QueueOut], **errors(503)}, **needs("read"))
def queues(request: HttpRequest) -> list[dict[str, Any]]:
    """Messages waiting in each work queue, and who consumes each (dead jobs are the
    ledger's: ``GET /jobs?status=dead``)."""
    _broker_up()
    consumers: dict[str, list[str]] = {name: [] for name in QUEUES}
    for row in heartbeats():
        for name in row["queues"] if row["alive"] else []:
            consumers.setdefault(name, []).append(row["hostname"])
    declared = {queue.name: queue for queue in app.amqp.queues.values()}
    out = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in QUEUES:
            queue = declared[name]
            # Not passive: Redis drops an empty list, and a passive declare would then fail.
            ok: Any = queue(channel).queue_declare()
            out.append(
                {"name": name, "depth": int(ok.message_count), "consumers": consumers.get(name, [])}
            )
    return out


def processes() -> dict[str, Any]:
    """The beat leader, every beat process and every worker, with their last sign of life
    (the part of ``/services`` that is not the services runtime's)."""
    conf = get_settings().beat
    fresh = datetime.now(UTC) - timedelta(seconds=conf.lease_ttl_s + conf.renew_interval_s)
    with engine().connect() as conn:
        leader = conn.execute(LEASE).mappings().first()
        beats = [dict(row) for row in conn.execute(BEATS).mappings()]
    for row in beats:
        row["alive"] = row["last_tick_at"] >= fresh
    return {
        "beat_leader": dict(leader) if leader else None,
        "beats": beats,
        "workers": heartbeats(),
    }


class StatsQuery(Schema):
    """The window ``/stats`` counts over."""

    hours: int = Field(24, ge=1, le=statistics.MAX_HOURS, description="the window, in hours")


@router.get("/stats", response={200: StatsOut, **errors()}, **needs("read"))
def stats(request: HttpRequest, query: Query[StatsQuery]) -> dict[str, Any]:
    """Jobs created in the last ``hours`` hours by state, handler and queue; and how many
    are unfinished now, whenever they were created.

    The hourly statistics answer while fresh and of the same window (``generated_at``
    says when they were counted); otherwise the ledger is counted now."""
    hours = query.hours
    cached = statistics.cached(hours)
    if cached is not None:
        return {
            "hours": hours,
            "since": datetime.fromisoformat(cached["since"]),
            "generated_at": datetime.fromisoformat(cached["generated_at"]),
            "total": cached["created"]["total"],
            "by_status": cached["created"]["by_status"],
            "by_handler": cached["created"]["by_handler"],
            "by_queue": cached["created"]["by_queue"],
            "unfinished": cached["unfinished"],
        }
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    with engine().connect() as conn:
        created, unfinished = counts(conn, since)
    return {
        "hours": hours,
        "since": since,
        "generated_at": now,
        "total": sum(created["status"].values()),
        "by_status": created["status"],
        "by_handler": created["handler"],
        "by_queue": created["queue"],
        "unfinished": unfinished,
    }
