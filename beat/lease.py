"""The leader lease: one row in PostgreSQL that one beat holds; only the holder fires.

The holder renews it every ``beat.renew_interval_s``; a dead holder is replaced once
its lease expires (``beat.lease_ttl_s``). A fire checks the lease in its own
transaction (:meth:`Lease.holds`), so a beat that lost it never writes a fire.
Each beat also keeps a row of its own in ``conveyor_beat_instance`` (its last tick
and last error) for health checks and the CLI.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime

from sqlalchemy import Connection, text

#: The lease's row.
NAME = "beat"

ACQUIRE = text("""
INSERT INTO conveyor_beat_lease AS l (name, holder, acquired_at, renewed_at, expires_at)
VALUES (:name, :me, now(), now(), now() + make_interval(secs => :ttl))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
    renewed_at = now(),
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING holder
""")
RELEASE = text("""
UPDATE conveyor_beat_lease SET expires_at = now() - interval '1 second'
WHERE name = :name AND holder = :me
""")
FENCE = text("""
SELECT 1 FROM conveyor_beat_lease
WHERE name = :name AND holder = :me AND expires_at > now() FOR SHARE
""")
INSTANCE = text("""
INSERT INTO conveyor_beat_instance (identity, started_at, last_tick_at, leader, last_error)
VALUES (:me, :started, now(), :leader, :error)
ON CONFLICT (identity) DO UPDATE SET last_tick_at = now(), leader = EXCLUDED.leader,
    last_error = EXCLUDED.last_error
""")
FORGET_INSTANCE = text("DELETE FROM conveyor_beat_instance WHERE identity = :me")

_identity: tuple[int, str] | None = None


def identity() -> str:
    """This beat process's name in the lease: host, pid and a random tag (one per process)."""
    global _identity
    if _identity is None or _identity[0] != os.getpid():
        _identity = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    return _identity[1]


class Lease:
    """One beat's side of the lease, in the caller's transactions."""

    def __init__(self, me: str, ttl_s: float, started: datetime) -> None:
        self.me = me
        self.ttl_s = ttl_s
        self.started = started

    def renew(self, conn: Connection, last_error: str) -> bool:
        """Take or keep the lease if it is free or ours, and report this beat; True if held."""
        holder = conn.execute(ACQUIRE, {"name": NAME, "me": self.me, "ttl": self.ttl_s}).scalar()
        leader = holder == self.me
        conn.execute(
            INSTANCE,
            {"me": self.me, "started": self.started, "leader": leader, "error": last_error},
        )
        return leader

    def holds(self, conn: Connection) -> bool:
        """True while the lease is ours; the row stays locked until ``conn`` commits."""
        return conn.execute(FENCE, {"name": NAME, "me": self.me}).first() is not None

    def release(self, conn: Connection) -> None:
        """Give the lease up (another beat takes over at once) and forget this beat."""
        conn.execute(RELEASE, {"name": NAME, "me": self.me})
        conn.execute(FORGET_INSTANCE, {"me": self.me})
