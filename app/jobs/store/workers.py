"""Workers' heartbeats, and the recovery of jobs a silent worker left running."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection

from app.jobs.models import JobStatus
from app.jobs.store.queries import ALIVE_WORKERS, BEAT, HEARTBEATS, RECOVER


def beat(
    conn: Connection, hostname: str, pid: int, queues: str, rss_bytes: int | None = None
) -> None:
    """Record that worker ``hostname`` (process ``pid``, consuming ``queues``, its largest
    process resident in ``rss_bytes``) is alive."""
    conn.exec_driver_sql(
        BEAT, {"hostname": hostname, "pid": pid, "queues": queues, "rss_bytes": rss_bytes}
    )


def alive(conn: Connection, within_s: float) -> set[str]:
    """The workers heard from within ``within_s`` seconds."""
    return {
        str(name) for name in conn.exec_driver_sql(ALIVE_WORKERS, {"after": within_s}).scalars()
    }


def heartbeats(conn: Connection) -> list[dict[str, Any]]:
    """Every worker's last heartbeat (hostname, pid, queues, started_at, last_seen,
    rss_bytes)."""
    return [dict(row) for row in conn.exec_driver_sql(HEARTBEATS).mappings()]


def recover(conn: Connection, after_s: float) -> list[uuid.UUID]:
    """Hand the jobs left running by workers silent for ``after_s`` back to the releaser,
    each with an event saying why; their ids. Jobs another recovery holds are skipped."""
    params = {
        "after": after_s,
        "running": JobStatus.RUNNING.value,
        "queued": JobStatus.QUEUED.value,
    }
    return list(conn.exec_driver_sql(RECOVER, params).scalars())
