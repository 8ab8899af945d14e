"""The console's front page: jobs per queue and state, broker depths, the beat leader, and
the hourly statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest

from app.db import engine
from app.jobs import statistics
from app.jobs.store import figures
from app.web import health
from app.web.admin.display import STATES
from beat.service import ScheduleService
from config.settings import QUEUES, Profile, get_settings

#: Tasks the front page lists from the hourly statistics (the busiest).
HOURLY_TASKS = 15


def console(request: HttpRequest) -> dict[str, Any]:
    """Context of every page: Flower's address, and the front page's figures (a callable,
    so they are computed only on the page that shows them)."""
    return {
        "conveyor_flower_url": flower_url(request),
        "conveyor_overview": overview,
        "conveyor_mail_sink": mail_sink(),
    }


def mail_sink() -> bool:
    """True when mail goes to the local sink and the console lists it (its Mail page)."""
    settings = get_settings()
    return settings.smtp.host is None and settings.profile is not Profile.PRODUCTION


def flower_url(request: HttpRequest) -> str:
    """Where Flower listens, as the operator's browser reaches it."""
    flower = get_settings().flower
    host = flower.host
    if host in ("0.0.0.0", "::", ""):  # all interfaces: the host this page came from
        host = urlsplit(f"//{request.get_host()}").hostname or "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{flower.port}"


def overview() -> dict[str, Any]:
    """Jobs per queue and state (ledger), messages per queue (broker), the beat leader.

    Counted now, never from the hourly statistics: an operator acts on these (a dead
    job requeued leaves the count at once, as it leaves ``conveyor_dead_letters``)."""
    counts: dict[str, dict[str, int]] = {queue: dict.fromkeys(STATES, 0) for queue in QUEUES}
    with engine().connect() as conn:
        for queue, by_state in figures.queue_states(conn).items():
            counts.setdefault(queue, dict.fromkeys(STATES, 0)).update(by_state)
    try:
        depths: dict[str, int] = queue_depths()
        broker_error = ""
    except Exception as exc:  # the page still shows the ledger when the broker is down
        depths, broker_error = {}, f"{type(exc).__name__}: {exc}"
    table = [
        {"queue": queue, "counts": list(by_state.values()), "broker": depths.get(queue, "?")}
        for queue, by_state in counts.items()
    ]
    return {
        "states": STATES,
        "queues": table,
        "totals": [sum(by_state[state] for by_state in counts.values()) for state in STATES],
        "broker_error": broker_error,
        "leader": ScheduleService().leader(),
        "dead": sum(by_state["dead"] for by_state in counts.values()),
        "hourly": hourly(),
    }


def hourly() -> dict[str, Any] | None:
    """The hourly statistics (``statistics.job_stats``) while fresh: when they were
    counted, over how long, and per task the jobs created and their run times, busiest
    first; None when there are none (no run yet, expired, Redis unreachable)."""
    stats = statistics.cached()
    if stats is None:
        return None
    durations = stats["durations"]
    tasks = [
        {"task": task, "created": created, **durations.get(task, {})}
        for task, created in sorted(
            stats["created"]["by_handler"].items(), key=lambda item: (-item[1], item[0])
        )
    ]
    return {
        "generated_at": datetime.fromisoformat(stats["generated_at"]),
        "hours": stats["hours"],
        "total": stats["created"]["total"],
        "tasks": tasks[:HOURLY_TASKS],
        "more": max(0, len(tasks) - HOURLY_TASKS),
        "ttl_s": get_settings().cache.stats_ttl_s,
    }


def queue_depths() -> dict[str, int]:
    """Messages waiting in each work queue."""
    with health.broker_connection() as conn:
        return health.queue_depths(conn)
