"""``/health/live`` (the process answers) and ``/health/ready`` (it can do its job).

Readiness checks the broker, the database, the cache Redis (and that no Redis in use
may evict keys, :mod:`app.redis_memory`), a live worker on each
queue, a beat leader, that no queue holding work has stopped being consumed, and that
no service of the services runtime is down (failed, with no host running it; checked
once a services process has written its rows).
Every probe is bounded by short timeouts, so a dead server makes the answer red
within seconds instead of hanging it. ``/metrics`` reads the same probes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.http import HttpRequest, JsonResponse
from kombu import Connection
from sqlalchemy import text

from app import redis_memory
from app.celery import app
from app.db import engine
from app.jobs.store import figures
from app.services import readiness
from app.services import store as service_rows
from app.web.tokens import allows, authenticate
from config.settings import QUEUES, get_settings

#: Seconds any one network step of a probe may take.
PROBE_TIMEOUT_S = 1.0
#: A queue whose oldest waiting job is older than this, with nothing started meanwhile
#: and its workers idle, is not being consumed (``?stalled_after_s=`` overrides it).
STALLED_AFTER_S = 30.0


class CheckFailed(Exception):
    """A probe's negative answer, with the details that explain it."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def error(status: int, code: str, message: str, field: str | None = None) -> JsonResponse:
    """A 4xx answer in the API's JSON shape."""
    body = {"error": {"status": status, "code": code, "message": message, "field": field}}
    return JsonResponse(body, status=status)


def refuse_without_read_token(request: HttpRequest) -> JsonResponse | None:
    """401 without a live ``Authorization: Bearer`` token, 403 if it cannot read; else None."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    token = authenticate(secret.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        refused = error(401, "unauthorized", "a valid API token is required", "Authorization")
        refused["WWW-Authenticate"] = 'Bearer realm="conveyor"'
        return refused
    if not allows(token, "read"):
        return error(403, "forbidden", "the token's scope does not allow reading")
    request.api_token = token
    return None


@contextlib.contextmanager
def broker_connection(timeout_s: float = PROBE_TIMEOUT_S) -> Iterator[Connection]:
    """A connection to the broker whose every connect, read and write gives up in time."""
    conn = app.connection_for_write(connect_timeout=timeout_s)
    if conn.transport.driver_type == "redis":
        bounds = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
        bounds["retry_on_timeout"] = False
    else:
        bounds = {"read_timeout": timeout_s, "write_timeout": timeout_s}
    conn.transport_options = {**(conn.transport_options or {}), **bounds}
    try:
        conn.ensure_connection(max_retries=0)
        yield conn
    finally:
        conn.release()


def queue_depths(conn: Connection) -> dict[str, int]:
    """Messages waiting in each work queue, as the broker counts them."""
    channel = conn.default_channel
    depths = {}
    for queue in app.amqp.queues.values():
        # Not passive: Redis drops an empty list, and a passive declare would then fail.
        declared: Any = queue(channel).queue_declare()
        depths[queue.name] = int(declared.message_count)
    return {name: depths.get(name, 0) for name in QUEUES}


def consumers(conn: Connection) -> dict[str, list[str]]:
    """The workers answering now, by the queue they consume (an empty list: nobody)."""
    replies = app.control.inspect(timeout=PROBE_TIMEOUT_S, connection=conn).active_queues()
    by_queue: dict[str, list[str]] = {queue: [] for queue in QUEUES}
    for worker, queues in (replies or {}).items():
        for queue in queues:
            by_queue.setdefault(queue["name"], []).append(worker)
    return by_queue


def stalled(
    depths: dict[str, int], by_queue: dict[str, list[str]], after_s: float
) -> dict[str, str]:
    """Queues that hold work nobody consumes, each with the reason.

    A queue is stalled when the broker holds messages for it, its oldest published
    job has waited longer than ``after_s``, none of its jobs started in that time, and
    none of the workers consuming it is running anything (busy workers are slow,
    not stuck). It catches a worker that answers but takes nothing (celery#8030).
    """
    since = datetime.now(UTC) - timedelta(seconds=after_s)
    with engine().connect() as conn:
        oldest = figures.oldest_queued(conn)
        busy = figures.busy_workers(conn)
        found = {}
        for queue in QUEUES:
            waiting_since = oldest.get(queue)
            if not depths.get(queue) or waiting_since is None or waiting_since > since:
                continue
            if busy.intersection(by_queue.get(queue, [])):
                continue
            # The newest job of the queue that started: in line order, the last start.
            last_start = figures.last_start(conn, queue)
            if last_start is None or last_start <= since:
                found[queue] = (
                    f"{depths[queue]} waiting, the oldest since {waiting_since.isoformat()}, "
                    f"nothing started for {after_s:g}s and no worker of it busy"
                )
    return found


def beat_leader() -> dict[str, Any] | None:
    """The beat holding the leader lease now (holder, since), or None."""
    with engine().connect() as conn:
        lease = (
            conn.execute(
                text(
                    "SELECT holder, acquired_at FROM conveyor_beat_lease "
                    "WHERE name = 'beat' AND expires_at > now()"
                )
            )
            .mappings()
            .first()
        )
    return None if lease is None else {"leader": lease["holder"], "since": lease["acquired_at"]}


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except CheckFailed as exc:
        result = {"ok": False, "error": str(exc), **exc.details}
    except Exception as exc:  # a health check reports every failure, it never raises
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _database() -> dict[str, Any]:
    with engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    return {}


def _redis() -> dict[str, Any]:
    client = redis.Redis.from_url(
        get_settings().cache_url,
        socket_connect_timeout=PROBE_TIMEOUT_S,
        socket_timeout=PROBE_TIMEOUT_S,
    )
    try:
        client.ping()
    finally:
        client.close()
    found = redis_memory.evicting(timeout_s=PROBE_TIMEOUT_S)
    if found:
        raise CheckFailed("; ".join(found), evicting=found)
    return {}


def _beat() -> dict[str, Any]:
    leader = beat_leader()
    with engine().connect() as conn:
        errors = conn.execute(
            text(
                "SELECT identity, last_error FROM conveyor_beat_instance "
                "WHERE last_error <> '' AND last_tick_at > now() - interval '1 minute'"
            )
        ).all()
    if leader is None:
        raise CheckFailed(
            "no beat holds the leader lease (none running, or none can reach the database)"
        )
    return {
        "leader": leader["leader"],
        "since": leader["since"].isoformat(),
        "errors": {identity: message for identity, message in errors},
    }


def service_freshness_s() -> float:
    """A service row heard from within this many seconds is alive (three heartbeats)."""
    return 3 * get_settings().services.heartbeat_interval_s


def _services() -> dict[str, Any]:
    with engine().connect() as conn:
        rows = service_rows.rows(conn, service_freshness_s())
    verdict = readiness.judge(rows)
    details = {
        "count": len(rows),
        "degraded": verdict.degraded,
        "silent": verdict.silent,
    }
    if verdict.down:
        raise CheckFailed(
            f"down: {', '.join(f'{name} ({why})' for name, why in verdict.down.items())}",
            down=verdict.down,
            **details,
        )
    return details


def _workers(by_queue: dict[str, list[str]]) -> dict[str, Any]:
    missing = [queue for queue in QUEUES if not by_queue.get(queue)]
    count = len({worker for workers in by_queue.values() for worker in workers})
    if missing:
        raise CheckFailed(
            f"no live worker consumes {', '.join(missing)}",
            missing=missing,
            count=count,
            queues=by_queue,
        )
    return {"count": count, "queues": by_queue}


def _consuming(
    depths: dict[str, int], by_queue: dict[str, list[str]], after_s: float
) -> dict[str, Any]:
    found = stalled(depths, by_queue, after_s)
    if found:
        raise CheckFailed(
            f"not consumed: {', '.join(found)}", stalled=found, stalled_after_s=after_s
        )
    return {"stalled_after_s": after_s}


def _skipped(reason: str) -> dict[str, Any]:
    return {"ok": False, "error": reason, "ms": 0.0}


def live(request: HttpRequest) -> JsonResponse:
    """200 whenever the process can answer at all (open: no token)."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, else 503; each check in the body. Needs a read token."""
    refused = refuse_without_read_token(request)
    if refused is not None:
        return refused
    raw = request.GET.get("stalled_after_s", str(STALLED_AFTER_S))
    try:
        after_s = float(raw)
    except ValueError:
        after_s = -1.0
    if not 1 <= after_s <= 86_400:
        return error(
            400,
            "invalid_parameter",
            f"{raw!r} is not a number of seconds from 1 to 86400",
            "stalled_after_s",
        )
    checks = {"database": _timed(_database), "redis": _timed(_redis)}
    checks["beat"] = _timed(_beat) if checks["database"]["ok"] else _skipped("database down")
    if checks["database"]["ok"]:
        services = _timed(_services)
        # Judged once a services process has written a row: a deployment that runs no
        # services runtime has none to check.
        if not services["ok"] or services["count"]:
            checks["services"] = services
    with contextlib.ExitStack() as stack:
        found: dict[str, Any] = {}

        def broker() -> dict[str, Any]:
            found["conn"] = stack.enter_context(broker_connection())
            found["depths"] = queue_depths(found["conn"])
            return {"depths": found["depths"]}

        def workers() -> dict[str, Any]:
            found["consumers"] = consumers(found["conn"])
            return _workers(found["consumers"])

        checks["broker"] = _timed(broker)
        checks["workers"] = _timed(workers) if "depths" in found else _skipped("broker down")
    if "consumers" in found and checks["database"]["ok"]:
        checks["consuming"] = _timed(
            lambda: _consuming(found["depths"], found["consumers"], after_s)
        )
    else:
        checks["consuming"] = _skipped("broker, workers or database down")
    failing = [name for name, check in checks.items() if not check["ok"]]
    return JsonResponse(
        {"status": "fail" if failing else "ok", "failing": failing, "checks": checks},
        status=503 if failing else 200,
    )
