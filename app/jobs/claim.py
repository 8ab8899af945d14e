"""The claim a worker makes before it runs a delivery: once, alone, within the cap.

One round trip per delivery, on a connection each pool process keeps:

* a job already finished (completed, cancelled, dead) is acknowledged, not run;
* a job another delivery is running right now (session advisory lock) is not run twice;
* a job delivered more than ``max_redeliveries`` times beyond one per attempt is dead.

The lock is released when the attempt ends, or by PostgreSQL when the process dies.
When PostgreSQL is unreachable the claim fails open: the job runs, as plain Celery would.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from app.jobs.models import FINISHED
from config.settings import get_settings

logger = logging.getLogger(__name__)

CLAIM = """
WITH prev AS (
    SELECT status FROM jobs WHERE id = %(id)s
), counted AS (
    INSERT INTO jobs AS j (id, handler, queue, payload, status, status_at, deliveries,
                           attempts, created_at)
    VALUES (%(id)s, %(handler)s, %(queue)s, %(payload)s, 'queued', '-infinity', 1, 0, now())
    ON CONFLICT (id) DO UPDATE SET deliveries = j.deliveries + 1
    RETURNING deliveries
)
SELECT (SELECT status FROM prev), (SELECT deliveries FROM counted),
       pg_try_advisory_lock(hashtextextended(%(id)s::text, 0))
"""

UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%s::text, 0))"


class Verdict(StrEnum):
    """What the worker does with a delivery."""

    RUN = "run"
    FINISHED = "finished"  #: ran to an end before: acknowledge, do not run
    BUSY = "busy"  #: another delivery of it is running now
    OVER_CAP = "over_cap"  #: redelivered too often: dead


@dataclass(frozen=True)
class Claim:
    """The verdict on one delivery and the numbers behind it."""

    verdict: Verdict
    status: str | None = None
    deliveries: int = 0


class Claims:
    """Claims made by this process, on its own connection."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._held: set[str] = set()

    def _connection(self) -> psycopg.Connection:
        if self._pid != os.getpid():  # forked: never share the parent's socket
            self._conn, self._pid, self._held = None, os.getpid(), set()
        if self._conn is None or self._conn.closed:
            dsn = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
            # A claim guards a delivery; it need not wait for its WAL flush. A
            # database crash can lose the last counts, never a job or a transition.
            self._conn.execute("SET synchronous_commit = off")
        return self._conn

    def claim(
        self, job_id: str, handler: str, queue: str | None, payload: dict[str, Any], attempt: int
    ) -> Claim:
        """Count this delivery and decide whether it runs."""
        try:
            row = (
                self._connection()
                .execute(
                    CLAIM,
                    {
                        "id": job_id,
                        "handler": handler,
                        "queue": queue or "?",
                        "payload": Jsonb(payload),
                    },
                )
                .fetchone()
            )
        except psycopg.Error as exc:
            logger.warning("claim of %s failed open (%s): running it unchecked", job_id, exc)
            self._conn = None
            self._held.clear()  # a lost session holds no locks
            return Claim(Verdict.RUN)
        assert row is not None
        status, deliveries, locked = row
        if status in FINISHED:
            if locked:
                self._held.add(job_id)
                self.release(job_id)
            return Claim(Verdict.FINISHED, status, deliveries)
        if not locked:
            return Claim(Verdict.BUSY, status, deliveries)
        self._held.add(job_id)
        if deliveries - attempt > get_settings().ledger.max_redeliveries:
            self.release(job_id)
            return Claim(Verdict.OVER_CAP, status, deliveries)
        return Claim(Verdict.RUN, status, deliveries)

    def finish(self, job_id: str, recorder: Any) -> None:
        """Write what ``recorder`` buffered (this attempt's outcome), then release ``job_id``.

        Both on this process's claim connection, in one round trip, the unlock after
        the write's commit. If the write fails, the recorder keeps the batch for its
        own retries and the lock is released all the same (the outcome then reaches
        the ledger later, as it would with plain Celery).
        """
        conn = self._conn if job_id in self._held and self._pid == os.getpid() else None
        if conn is None or conn.closed:
            recorder.drain()
            self.release(job_id)
            return
        unlock = psycopg.ClientCursor(conn).mogrify(UNLOCK, (job_id,))
        if recorder.drain(conn, then=unlock):
            self._held.discard(job_id)
        else:
            self.release(job_id)

    def release(self, job_id: str) -> None:
        """End this process's hold on ``job_id`` (a no-op when it holds none)."""
        if job_id not in self._held:
            return
        self._held.discard(job_id)
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.execute(UNLOCK, (job_id,))
        except psycopg.Error as exc:
            logger.warning("could not release %s (%s); the lock ends with the session", job_id, exc)
            self._conn = None
            self._held.clear()


claims = Claims()
