"""``/health/live`` (the process answers) and ``/health/ready`` (it can do its job)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse
from sqlalchemy import text

from app.celery import app
from app.db import engine
from config.settings import QUEUES


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except Exception as exc:  # a health check reports every failure, it never raises
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _broker() -> dict[str, Any]:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {}


def _database() -> dict[str, Any]:
    with engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    return {}


def _workers() -> dict[str, Any]:
    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    by_queue: dict[str, list[str]] = {queue: [] for queue in QUEUES}
    for worker, queues in replies.items():
        for queue in queues:
            by_queue.setdefault(queue["name"], []).append(worker)
    if not replies:
        raise RuntimeError("no worker answered within 1s")
    return {"count": len(replies), "queues": by_queue}


def _beat() -> dict[str, Any]:
    with engine().connect() as conn:
        lease = (
            conn.execute(
                text(
                    "SELECT holder, acquired_at, expires_at FROM conveyor_beat_lease "
                    "WHERE name = 'beat' AND expires_at > now()"
                )
            )
            .mappings()
            .first()
        )
        errors = conn.execute(
            text(
                "SELECT identity, last_error FROM conveyor_beat_instance "
                "WHERE last_error <> '' AND last_tick_at > now() - interval '1 minute'"
            )
        ).all()
    if lease is None:
        raise RuntimeError(
            "no beat holds the leader lease (none running, or none can reach the database)"
        )
    return {
        "leader": lease["holder"],
        "since": lease["acquired_at"].isoformat(),
        "errors": {identity: error for identity, error in errors},
    }


def live(request: HttpRequest) -> JsonResponse:
    """200 whenever the process can answer at all."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """200 when the broker, the database, a worker and a beat leader answer; else 503."""
    checks = {"broker": _timed(_broker), "database": _timed(_database)}
    checks["beat"] = (
        _timed(_beat) if checks["database"]["ok"] else {"ok": False, "error": "database down"}
    )
    checks["workers"] = (
        _timed(_workers) if checks["broker"]["ok"] else {"ok": False, "error": "broker down"}
    )
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "fail", "checks": checks}, status=200 if healthy else 503
    )
