"""The leader lease: the lease named ``beat`` (:mod:`app.lease`); only its holder fires.

The holder renews it every ``beat.renew_interval_s``; a dead holder is replaced once
its lease expires (``beat.lease_ttl_s``). A fire checks the lease in its own
transaction (:meth:`LeaderLease.holds`), so a beat that lost it never writes a fire.
Each beat also keeps a row of its own in ``conveyor_beat_instance`` (its last tick
and last error) for health checks and the CLI. The lease table holds every lease
(singleton services' too); beat's is the row named :data:`NAME`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

from app.lease import Lease

#: The lease's row.
NAME = "beat"

INSTANCE = text("""
INSERT INTO conveyor_beat_instance (identity, started_at, last_tick_at, leader, last_error)
VALUES (:me, :started, now(), :leader, :error)
ON CONFLICT (identity) DO UPDATE SET last_tick_at = now(), leader = EXCLUDED.leader,
    last_error = EXCLUDED.last_error
""")
FORGET_INSTANCE = text("DELETE FROM conveyor_beat_instance WHERE identity = :me")


class LeaderLease:
    """One beat's side of the leader lease and its instance row, in the caller's
    transactions."""

    def __init__(self, me: str, ttl_s: float, started: datetime) -> None:
        self.me = me
        self.ttl_s = ttl_s
        self.started = started
        self.lease = Lease(NAME, me, ttl_s)

    def renew(self, conn: Connection, last_error: str) -> bool:
        """Take or keep the lease if it is free or ours, and report this beat; True if held."""
        leader = self.lease.acquire(conn)
        conn.execute(
            INSTANCE,
            {"me": self.me, "started": self.started, "leader": leader, "error": last_error},
        )
        return leader

    def epoch(self, conn: Connection) -> datetime | None:
        """When the cluster's current run of leaders began (:meth:`app.lease.Lease.epoch`):
        the first leader after the lease had been free for two lease lifetimes."""
        return self.lease.epoch(conn)

    def holds(self, conn: Connection) -> bool:
        """True while the lease is ours; the row stays locked until ``conn`` commits."""
        return self.lease.holds(conn)

    def release(self, conn: Connection) -> None:
        """Give the lease up (another beat takes over at once) and forget this beat."""
        self.lease.release(conn)
        conn.execute(FORGET_INSTANCE, {"me": self.me})
