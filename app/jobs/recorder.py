"""Batched lifecycle writes: the worker's hot path only appends to a buffer.

A background thread per process drains the buffer into PostgreSQL every
``flush_interval_s`` or sooner when ``batch_size`` transitions wait. A failed
write is logged and retried with backoff; the transitions stay buffered
(bounded), so a database outage delays the ledger but loses nothing and never
raises into a job (dramatiq's ``emit_after`` rule).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from kombu.utils import json as kombu_json
from psycopg.types.json import Jsonb

from app.jobs.store.queries import (
    COPY_EVENTS,
    EVENT_IF_NEW,
    EVENT_ROW,
    INSERT_EVENTS_HEAD,
    JOB_FIELDS,
    UPSERT,
    UPSERT_HEAD,
    UPSERT_ROW,
    UPSERT_TAIL,
)

logger = logging.getLogger(__name__)

#: Job fields that hold times.
TIMES = ("enqueued_at", "due_at", "started_at", "finished_at")


@dataclass(slots=True)
class Transition:
    """One job entering one state, with what the emitter knows about the job."""

    job_id: str
    to_status: str
    from_status: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    attempt: int = 0
    worker: str | None = None
    detail: str | None = None
    job: dict[str, Any] = field(default_factory=dict)
    #: Its outcome is in the delivery gate too, until this transition is written.
    gated: bool = False

    def to_json(self) -> dict[str, Any]:
        """This transition as JSON-ready data (times as ISO 8601)."""
        return {
            "job_id": self.job_id,
            "to_status": self.to_status,
            "from_status": self.from_status,
            "at": self.at.isoformat(),
            "attempt": self.attempt,
            "worker": self.worker,
            "detail": self.detail,
            "job": {
                name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in self.job.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transition:
        """The transition :meth:`to_json` gave."""
        job = dict(data.get("job") or {})
        for name in TIMES:
            if isinstance(job.get(name), str):
                job[name] = datetime.fromisoformat(job[name])
        return cls(
            job_id=str(data["job_id"]),
            to_status=str(data["to_status"]),
            from_status=data.get("from_status"),
            at=datetime.fromisoformat(data["at"]),
            attempt=int(data.get("attempt") or 0),
            worker=data.get("worker"),
            detail=data.get("detail"),
            job=job,
        )


def fold(transitions: Iterable[Transition]) -> list[dict[str, Any]]:
    """One upsert row per job: the latest state, and every field any transition knew."""
    rows: dict[str, dict[str, Any]] = {}
    for transition in sorted(transitions, key=lambda t: t.at):
        row = rows.setdefault(
            transition.job_id,
            {
                **dict.fromkeys(JOB_FIELDS),
                "id": transition.job_id,
                "handler": "",
                "queue": "",
                "payload": {},
                "metadata": {},
                "attempts": 0,
                "deliveries": 0,
            },
        )
        for name, value in transition.job.items():
            if value is not None:
                row[name] = value
        row["status"] = transition.to_status
        row["status_at"] = transition.at
        row["attempts"] = max(row["attempts"] or 0, transition.attempt)
        if transition.worker:
            row["worker"] = transition.worker
    for row in rows.values():
        for name in ("payload", "metadata", "result"):
            if row[name] is not None:
                row[name] = Jsonb(row[name], dumps=kombu_json.dumps)
        row["handler"] = row["handler"] or "?"
        row["queue"] = row["queue"] or "?"
    return list(rows.values())


class Recorder:
    """A bounded buffer of transitions and the thread that writes them in batches."""

    def __init__(
        self,
        dsn: str,
        *,
        flush_interval_s: float = 0.2,
        batch_size: int = 500,
        max_buffer: int = 500_000,
    ) -> None:
        self.dsn = dsn
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        #: Called with the ids of ``gated`` transitions once they are written.
        self.on_written: Callable[[set[str]], None] | None = None
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.close)

    def _reset(self) -> None:
        # A forked child starts empty: what the parent buffered, the parent writes.
        self._buffer: deque[Transition] = deque()
        self._lock = threading.Lock()
        self._write_lock = threading.RLock()  # one writer at a time on the connection
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self._stopping = False
        self._dropped = 0
        self.failures = 0

    def record(self, transition: Transition) -> None:
        """Buffer one transition; never blocks on the database, never raises."""
        with self._lock:
            if len(self._buffer) >= self.max_buffer:
                self._buffer.popleft()
                self._dropped += 1
                if self._dropped in (1, 1000) or self._dropped % 100_000 == 0:
                    logger.error("ledger buffer full: %d transitions dropped", self._dropped)
            self._buffer.append(transition)
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-ledger", daemon=True
                )
                self._thread.start()
            if len(self._buffer) >= self.batch_size:
                self._wake.set()

    def pending(self) -> int:
        """Transitions not yet written."""
        return len(self._buffer)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything buffered so far is written; False on timeout."""
        self._wake.set()
        return self._idle.wait(timeout_s)

    def drain(self, conn: psycopg.Connection | None = None, then: str = "") -> bool:
        """Write everything buffered now, on the calling thread; False if it failed.

        A task calls this when its attempt ends (``ConveyorTask.after_return``), so
        the outcome is written before the job's lock is released: a second delivery
        then finds it finished instead of running it again. With ``conn`` (an
        autocommit connection: the claim's) the batch and then ``then`` (SQL run after
        the commit, e.g. the claim's unlock) go in one round trip. The result is True
        only when everything was written and ``then``, if any, ran.
        """
        with self._write_lock:
            batch = self._take(everything=True)
            if not batch:
                return not then
            try:
                if conn is not None:
                    self._write_pipelined(conn, batch, then)
                else:
                    self._write(batch)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._retry_later(batch, exc)
                return False
            except Exception:
                self._write_one_by_one(batch)
                return not then
        self._written(batch)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is left (warm shutdown), then stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self.flush(timeout_s)
        self._stopping = True
        self._wake.set()
        self._close_connection()

    def _take(self, everything: bool = False) -> list[Transition]:
        with self._lock:
            count = len(self._buffer) if everything else min(len(self._buffer), self.batch_size * 4)
            return [self._buffer.popleft() for _ in range(count)]

    def _put_back(self, batch: list[Transition]) -> None:
        with self._lock:
            self._buffer.extendleft(reversed(batch))

    def _run(self) -> None:
        backoff_s = 0.0
        while not self._stopping:
            self._wake.wait(backoff_s or self.flush_interval_s)
            self._wake.clear()
            while True:
                batch = self._take()
                if not batch:
                    with self._lock:
                        if not self._buffer:
                            self._idle.set()
                    break
                try:
                    with self._write_lock:
                        self._write(batch)
                    self._written(batch)
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    self._retry_later(batch, exc)  # the database is away: keep it all
                    backoff_s = min(5.0, max(0.5, backoff_s * 2))
                    break
                except Exception:
                    # Bad data (a row the database refuses, a value JSON cannot carry):
                    # retrying the batch cannot help, so write what can be written.
                    self._write_one_by_one(batch)
                else:
                    if self.failures:
                        logger.info("ledger writes resumed after %d failures", self.failures)
                    self.failures = 0
                    backoff_s = 0.0

    def _written(self, batch: list[Transition]) -> None:
        """Tell the gate which of its outcomes PostgreSQL now has; never raises."""
        ids = {t.job_id for t in batch if t.gated}
        if not ids or self.on_written is None:
            return
        try:
            self.on_written(ids)
        except Exception as exc:  # they stay listed; only a duplicate event can come of it
            logger.warning("could not clear %d written outcomes from the gate: %s", len(ids), exc)

    def _retry_later(self, batch: list[Transition], exc: Exception) -> None:
        self._put_back(batch)
        self.failures += 1
        if self.failures == 1 or self.failures % 20 == 0:
            logger.warning("ledger write failed (%d pending, retrying): %s", self.pending(), exc)
        self._close_connection()

    def _write_one_by_one(self, batch: list[Transition]) -> None:
        """Write what can be written; log and drop a transition that cannot be."""
        self._close_connection()
        for index, transition in enumerate(batch):
            try:
                with self._write_lock:
                    self._write([transition])
                self._written([transition])
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._put_back(batch[index:])
                return
            except Exception as exc:
                logger.error("ledger dropped %r: %s", transition, exc)
                self._close_connection()

    def _close_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, connect_timeout=5)
        return self._conn

    @staticmethod
    def _write_pipelined(conn: psycopg.Connection, batch: list[Transition], then: str = "") -> None:
        """One transaction and ``then`` (SQL run after its commit) in one round trip.

        The statements go as one simple-protocol string (values bound client-side), so
        PostgreSQL runs them in order: ``then`` only after the commit succeeded.
        ``conn`` must be in autocommit mode.
        """
        cur = psycopg.ClientCursor(conn)
        rows = ",".join(cur.mogrify(UPSERT_ROW, row) for row in fold(batch))
        events = ",".join(
            cur.mogrify(
                EVENT_ROW,
                (t.job_id, t.from_status, t.to_status, t.at, t.attempt, t.worker, t.detail),
            )
            for t in batch
        )
        script = (
            "BEGIN; SET LOCAL synchronous_commit = on;"
            f"{UPSERT_HEAD}{rows}{UPSERT_TAIL};"
            f"{INSERT_EVENTS_HEAD}{events}; COMMIT; {then}"
        )
        try:
            cur.execute(script.encode())
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            raise

    def _write(self, batch: list[Transition]) -> None:
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(UPSERT, fold(batch))
            with cur.copy(COPY_EVENTS) as copy:
                for t in batch:
                    copy.write_row(
                        (t.job_id, t.from_status, t.to_status, t.at, t.attempt, t.worker, t.detail)
                    )


def write_adopted(conn: psycopg.Connection, batch: list[Transition]) -> None:
    """Write outcomes taken over from a dead process, in one transaction.

    Its own batch may have reached PostgreSQL before it died: the upsert is
    idempotent, and an event is only added when its job has none like it.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(UPSERT, fold(batch))
        cur.executemany(
            EVENT_IF_NEW,
            [
                {
                    "id": t.job_id,
                    "from": t.from_status,
                    "to": t.to_status,
                    "at": t.at,
                    "attempt": t.attempt,
                    "worker": t.worker,
                    "detail": t.detail,
                }
                for t in batch
            ],
        )
