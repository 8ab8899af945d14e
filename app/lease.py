"""Leases: a named row in PostgreSQL that one process holds at a time, renewed and fenced.

The holder renews its lease before it expires; a dead holder is replaced once its
lease has expired, by whichever process asks first (:meth:`Lease.acquire` is one
atomic statement, so two can never both win). Work that must only happen while the
lease is held checks it first (:meth:`Lease.holds`), so a holder that lost its lease
stops acting. Every time is PostgreSQL's ``now()``: one clock, whatever the hosts'.

The table ``conveyor_beat_lease`` (created by beat's Django migration, keyed by
``name``) holds every lease, not only beat's: beat's leader lease is the row
``beat``, each singleton service's is ``service:<name>``. ``name`` is at most 50
characters and ``holder`` 200. A lease's ``epoch`` is when its current run of holders
began: the first holder after the lease had been free for a while starts one, a
handover keeps it (beat fires its run-on-startup schedules once per epoch).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime

from sqlalchemy import Connection, text

#: -- acquire_lease -- take the lease if it is free or expired, or keep it if it is ours;
#: returns the holder after the statement (``:me`` when we hold it, nothing otherwise).
#: A lease no one held for ``:gap`` seconds starts a new ``epoch``; a handover keeps it.
ACQUIRE = text("""
INSERT INTO conveyor_beat_lease AS l (name, holder, acquired_at, renewed_at, expires_at, epoch)
VALUES (:name, :me, now(), now(), now() + make_interval(secs => :ttl), now())
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
    renewed_at = now(),
    expires_at = EXCLUDED.expires_at,
    epoch = CASE
        WHEN l.holder <> EXCLUDED.holder AND l.expires_at < now() - make_interval(secs => :gap)
        THEN now()
        ELSE coalesce(l.epoch, now())
    END
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING holder
""")
#: -- release_lease -- give the lease up if it is ours: it expires now.
RELEASE = text("""
UPDATE conveyor_beat_lease SET expires_at = now() - interval '1 second'
WHERE name = :name AND holder = :me
""")
#: -- fence_lease -- one row while the lease is ours; locked until the transaction ends.
FENCE = text("""
SELECT 1 FROM conveyor_beat_lease
WHERE name = :name AND holder = :me AND expires_at > now() FOR SHARE
""")
#: -- lease_epoch -- when the current run of holders began, while the lease is ours.
EPOCH = text("""
SELECT epoch FROM conveyor_beat_lease WHERE name = :name AND holder = :me AND expires_at > now()
""")
#: -- lease_holders -- the live holder of every lease whose name starts with ``:prefix``.
HOLDERS = text("""
SELECT name, holder FROM conveyor_beat_lease
WHERE starts_with(name, :prefix) AND expires_at > now()
""")

#: Longest host part of an identity, so that an identity fits ``holder``.
MAX_HOST_LENGTH = 150

_tag: tuple[int, str] | None = None


def identity(host: str | None = None) -> str:
    """This process's name as a lease holder: host, pid and a random tag (one per process)."""
    global _tag
    if _tag is None or _tag[0] != os.getpid():
        _tag = (os.getpid(), uuid.uuid4().hex[:6])
    return f"{(host or socket.gethostname())[:MAX_HOST_LENGTH]}:{_tag[0]}:{_tag[1]}"


def holders(conn: Connection, prefix: str) -> dict[str, str]:
    """Lease name → live holder, for every lease whose name starts with ``prefix``."""
    rows = conn.execute(HOLDERS, {"prefix": prefix})
    return {str(name): str(holder) for name, holder in rows}


class Lease:
    """One process's side of the lease ``name``, in the caller's transactions."""

    def __init__(self, name: str, me: str, ttl_s: float, gap_s: float | None = None) -> None:
        self.name = name
        self.me = me
        self.ttl_s = ttl_s
        #: How long the lease must have been free for its next holder to start an epoch.
        self.gap_s = 2 * ttl_s if gap_s is None else gap_s

    def acquire(self, conn: Connection) -> bool:
        """Take the lease if it is free or expired, or renew it if ours; True if now held."""
        params = {"name": self.name, "me": self.me, "ttl": self.ttl_s, "gap": self.gap_s}
        return bool(conn.execute(ACQUIRE, params).scalar() == self.me)

    def epoch(self, conn: Connection) -> datetime | None:
        """When the current run of holders began (the first to take the lease after it had
        been free for ``gap_s``); None unless the lease is ours."""
        value = conn.execute(EPOCH, {"name": self.name, "me": self.me}).scalar()
        return value if isinstance(value, datetime) else None

    def holds(self, conn: Connection) -> bool:
        """True while the lease is ours; the row stays locked until ``conn`` commits."""
        return conn.execute(FENCE, {"name": self.name, "me": self.me}).first() is not None

    def release(self, conn: Connection) -> None:
        """Give the lease up, so that another process takes it at once."""
        conn.execute(RELEASE, {"name": self.name, "me": self.me})
