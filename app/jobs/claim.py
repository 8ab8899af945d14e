"""The claim a worker makes before it runs a delivery: once, alone, within the cap.

One round trip per delivery on the delivery gate (:mod:`app.jobs.gate`, Redis), and
the attempt's outcome sent there when it ends:

* a job already finished (completed, failed, cancelled, dead) is acknowledged, not run;
* a job another delivery holds right now is not run twice: the duplicate comes back
  later, unless its holder is a process known to be gone, whose lock is taken over;
* a job delivered more than ``max_redeliveries`` times beyond one per attempt is dead;
* the attempt's outcome is on its way to the gate before the message is acknowledged
  (its reply is read with the process's next gate call, and what Redis did not run
  is sent again), so a worker that dies before its batch reaches PostgreSQL loses
  nothing.

A delivery the gate may have forgotten (see the gate's ``since``) is also checked
in PostgreSQL. When the gate is unreachable, claims are made in PostgreSQL, with a
session advisory lock that ends with the process; when PostgreSQL is unreachable
too, the claim fails open: the job runs, as plain Celery would.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from psycopg.types.json import Jsonb

from app.jobs.gate import Holder, gate
from app.jobs.models import FINISHED, JobStatus
from app.jobs.recorder import Transition
from app.jobs.store.queries import CLAIM, JOB_COUNT, SILENT, UNLOCK
from app.jobs.verdict import (
    BUSY_RETRY_MAX_S,
    Claim,
    Verdict,
    busy_wait_s,
    holder_gone,
    in_ledger,
    reconcile,
    trusted,
    within_cap,
)
from config.settings import get_settings

logger = logging.getLogger(__name__)

#: Seconds claims go to PostgreSQL after the gate failed, before it is tried again.
GATE_RETRY_S = 5.0

#: How a held job was claimed.
GATE, LEDGER = "gate", "ledger"


@dataclass(frozen=True)
class Hold:
    """A job this process holds: how it was claimed, by whom, since when."""

    how: str
    holder: Holder
    since: datetime


class Claims:
    """Claims made by this process: on the gate, or on its own PostgreSQL connection."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._held: dict[str, Hold] = {}
        self._gate_down_until = 0.0

    def _forked(self) -> None:
        if self._pid != os.getpid():  # forked: never share the parent's socket or holds
            self._conn, self._pid, self._held = None, os.getpid(), {}
            self._gate_down_until = 0.0

    def _connection(self) -> psycopg.Connection:
        self._forked()
        if self._conn is None or self._conn.closed:
            dsn = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
            # A claim guards a delivery; it need not wait for its WAL flush. A
            # database crash can lose the last counts, never a job or a transition.
            self._conn.execute("SET synchronous_commit = off")
        return self._conn

    def close(self) -> None:
        """Close this process's PostgreSQL connection (holds made on it end).

        Also called when a query on it failed: the next claim opens a new one.
        """
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
        self._held = {k: v for k, v in self._held.items() if v.how != LEDGER}

    def holds(self, job_id: str) -> bool:
        """True while this process holds ``job_id``."""
        self._forked()
        return job_id in self._held

    def claim(
        self,
        job_id: str,
        handler: str,
        queue: str | None,
        payload: dict[str, Any],
        attempt: int,
        *,
        node: str | None = None,
        lease_s: float = 3660.0,
        sent_at: float | None = None,
        redelivered: bool = False,
    ) -> Claim:
        """Count this delivery and decide whether it runs.

        ``node`` is the worker's name, ``lease_s`` how long the job may run (its hard
        time limit and a margin), ``sent_at`` when its message was published (epoch
        seconds, None if unknown) and ``redelivered`` what the broker says.
        """
        self._forked()
        if time.monotonic() >= self._gate_down_until:
            try:
                return self._claim_on_gate(
                    job_id, attempt, Holder.me(node), lease_s, sent_at, redelivered
                )
            except redis.RedisError as exc:
                self._gate_down_until = time.monotonic() + GATE_RETRY_S
                logger.warning("delivery gate unreachable (%s): claiming in PostgreSQL", exc)
        return self._claim_in_ledger(job_id, handler, queue, payload, attempt, node)

    def _claim_on_gate(
        self,
        job_id: str,
        attempt: int,
        me: Holder,
        lease_s: float,
        sent_at: float | None,
        redelivered: bool,
    ) -> Claim:
        said = gate.claim(job_id, me, lease_s)
        if said.verdict == "finished":
            return Claim(Verdict.FINISHED, said.status, said.deliveries)
        deliveries = said.deliveries
        if said.verdict == "busy":
            stale = said.holder
            if stale is None or not self._gone(stale, me):
                return Claim(Verdict.BUSY, retry_after_s=busy_wait_s(said.lease_left_s))
            deliveries = gate.steal(job_id, stale, me, lease_s)
            if not deliveries:
                return Claim(Verdict.BUSY, retry_after_s=1.0)
            logger.warning("%s: took the job over from %s, which is gone", job_id, stale)
        self._held[job_id] = Hold(GATE, me, datetime.now(UTC))
        if not trusted(
            deliveries=deliveries,
            redelivered=redelivered,
            sent_at=sent_at,
            since=said.since,
            now=time.time(),
            ttl_s=gate.ttl_s(),
        ):
            status, counted = reconcile(deliveries, self._ledger_row(job_id))
            if status is not None:
                self._held.pop(job_id, None)
                gate.mark(job_id, status)
                gate.release(job_id, me)
                return Claim(Verdict.FINISHED, status, counted)
            if counted != deliveries:
                deliveries = counted
                gate.set_deliveries(job_id, deliveries)
        max_redeliveries = get_settings().ledger.max_redeliveries
        # OVER_CAP stays held: settle() records it dead.
        return Claim(within_cap(deliveries, attempt, max_redeliveries), None, deliveries)

    def _gone(self, holder: Holder, me: Holder) -> bool:
        """True when ``holder`` can no longer be running the job."""
        gone = holder_gone(holder, me, exited_here=holder.dead_here())
        if gone is not None:
            return gone
        try:  # another machine: gone when its worker stopped heartbeating
            row = (
                self._connection()
                .execute(
                    SILENT,
                    {"after": get_settings().ledger.recovery_after_s, "hostname": holder.node},
                )
                .fetchone()
            )
        except psycopg.Error:
            self.close()
            return False
        return bool(row and row[0])

    def _ledger_row(self, job_id: str) -> tuple[str, int] | None:
        """``(status, deliveries)`` of ``job_id`` in PostgreSQL, or None (absent, unreachable)."""
        try:
            row = self._connection().execute(JOB_COUNT, {"id": job_id}).fetchone()
        except psycopg.Error as exc:
            logger.warning("ledger check of %s failed (%s): trusting the gate", job_id, exc)
            self.close()
            return None
        return (str(row[0]), int(row[1])) if row else None

    def _claim_in_ledger(
        self,
        job_id: str,
        handler: str,
        queue: str | None,
        payload: dict[str, Any],
        attempt: int,
        node: str | None,
    ) -> Claim:
        """The claim when the gate is away: PostgreSQL's count and advisory lock."""
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
                        "queued": JobStatus.QUEUED.value,
                    },
                )
                .fetchone()
            )
        except psycopg.Error as exc:
            logger.warning("claim of %s failed open (%s): running it unchecked", job_id, exc)
            self.close()
            return Claim(Verdict.RUN)
        assert row is not None
        status, deliveries, locked = row
        verdict = in_ledger(
            status, deliveries, locked, attempt, get_settings().ledger.max_redeliveries
        )
        if locked:
            self._held[job_id] = Hold(LEDGER, Holder.me(node), datetime.now(UTC))
            if verdict is not Verdict.RUN:
                self.release(job_id)  # finished or over the cap: nothing will run
        retry_after_s = BUSY_RETRY_MAX_S if verdict is Verdict.BUSY else 0.0
        return Claim(verdict, status, deliveries, retry_after_s)

    def settle(self, transition: Transition) -> None:
        """The attempt of ``transition.job_id`` ended for good: tell the gate first.

        With the outcome sent to the gate (without waiting for the reply; it also
        lets go of the job), the transition may wait for its batch: it is marked
        ``gated`` so the recorder clears the gate's copy once PostgreSQL has it. A
        job claimed in PostgreSQL, or a gate that fails now, is left to
        :meth:`finish`.
        """
        hold = self._held.get(transition.job_id) if self._pid == os.getpid() else None
        if hold is None:
            # Ended where no claim was made (a hard time limit, seen by the worker's
            # main process): a later duplicate must still find it finished.
            if transition.to_status in FINISHED:
                try:
                    gate.mark(transition.job_id, transition.to_status)
                except redis.RedisError as exc:
                    logger.warning("gate could not take %s's end (%s)", transition.job_id, exc)
            return
        if hold.how != GATE:
            return
        transition.job.setdefault("started_at", hold.since)
        try:
            gate.finish(transition.job_id, hold.holder, transition.to_status, transition.to_json())
        except redis.RedisError as exc:
            logger.warning("gate could not take %s's outcome (%s)", transition.job_id, exc)
            return
        transition.gated = True
        self._held.pop(transition.job_id, None)

    def finish(self, job_id: str, recorder: Any) -> None:
        """Let go of ``job_id`` when the attempt ends; its outcome durable first.

        After :meth:`settle` there is nothing left to do. Otherwise (claimed in
        PostgreSQL, or the gate failed at the end) what ``recorder`` buffered is
        written now, then the job is let go: on the claim connection, the unlock
        after the write's commit, in one round trip. If the write fails, the
        recorder keeps the batch for its own retries and the job is let go all the
        same (the outcome then reaches the ledger later, as with plain Celery).
        """
        self._forked()
        hold = self._held.get(job_id)
        if hold is None:
            return
        if hold.how == GATE:
            recorder.drain()
            self.release(job_id)
            return
        conn = self._conn
        if conn is None or conn.closed:
            recorder.drain()
            self.release(job_id)
            return
        unlock = psycopg.ClientCursor(conn).mogrify(UNLOCK, {"id": job_id})
        if recorder.drain(conn, then=unlock):
            self._held.pop(job_id, None)
        else:
            self.release(job_id)

    def release(self, job_id: str) -> None:
        """End this process's hold on ``job_id`` (a no-op when it holds none)."""
        self._forked()
        hold = self._held.pop(job_id, None)
        if hold is None:
            return
        if hold.how == GATE:
            try:
                gate.release(job_id, hold.holder)
            except redis.RedisError as exc:
                logger.warning("could not release %s (%s); its lease ends it", job_id, exc)
            return
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.execute(UNLOCK, {"id": job_id})
        except psycopg.Error as exc:
            logger.warning("could not release %s (%s); the lock ends with the session", job_id, exc)
            self.close()


claims = Claims()
