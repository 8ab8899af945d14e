"""Worker heartbeats, and recovery of jobs a dead worker left ``running``.

Each worker's main process upserts its row in ``workers`` every
``ledger.heartbeat_interval_s``. A job still ``running`` on a worker not heard from
for ``ledger.recovery_after_s`` is handed back to the releaser (released now, with
an event saying why). Its first delivery can no longer run: the worker is gone,
and its hold on the job is taken over by the next delivery (see
:mod:`app.jobs.claim`); should the broker also redeliver the original message,
the claim acknowledges whichever delivery comes second.

Outcomes a dead process left in the delivery gate are written first
(:func:`reconcile`): by each worker for its own machine's processes, every second,
and by recovery for silent workers.

With each beat a worker also says in the gate which jobs it holds, and on Redis
hands back the messages no live worker holds that were delivered more than the
recovery bound ago (:mod:`app.jobs.unacked`): what a killed worker had received
but not finished, which Redis would otherwise keep for its visibility timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import psycopg
import redis
from celery import Celery

from app.db import engine
from app.jobs.gate import Holder, gate
from app.jobs.recorder import Transition, write_adopted
from app.jobs.store import workers
from app.jobs.unacked import held_here, restore_unheld
from config.settings import get_settings

logger = logging.getLogger(__name__)

#: Seconds an outcome of a dead process waits before this worker writes it.
RECONCILE_AFTER_S = 1.0
#: Seconds between a worker's looks for such outcomes.
RECONCILE_INTERVAL_S = 1.0


def _adopted(job_id: str, outcome: dict[str, Any]) -> Transition | None:
    if outcome.get("job_id"):
        transition = Transition.from_json(outcome)
    elif outcome.get("status"):  # the outcome itself expired: its status is left
        transition = Transition(job_id=job_id, to_status=outcome["status"])
    else:
        return None
    transition.detail = "; ".join(
        filter(None, [transition.detail, "written by recovery: its worker process was gone"])
    )
    return transition


def reconcile(gone: Callable[[Holder], bool], older_than_s: float) -> int:
    """Write the outcomes of attempts whose worker process died before its batch did.

    An outcome waits in the gate until PostgreSQL has it (see :mod:`app.jobs.gate`);
    one older than ``older_than_s`` whose writer is ``gone`` is taken over and
    written here, so the ledger shows how the job ended and recovery never runs an
    acknowledged job again. Returns how many were written; never raises for Redis.
    """
    try:
        waiting = gate.unflushed(older_than_s)
        adopted: dict[str, dict[str, Any]] = {}
        for job_id, writer in waiting:
            if writer is not None and not gone(writer):
                continue
            outcome = gate.adopt(job_id)
            if outcome is not None:
                adopted[job_id] = outcome
    except redis.RedisError as exc:
        logger.warning("could not read the gate's outcomes: %s", exc)
        return 0
    batch = [t for job_id, o in adopted.items() if (t := _adopted(job_id, o)) is not None]
    if batch:
        dsn = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                write_adopted(conn, batch)
        except psycopg.Error:
            for job_id in adopted:
                gate.give_back(job_id)
            raise
        logger.warning(
            "wrote %d outcomes left by dead worker processes: %s",
            len(batch),
            [t.job_id for t in batch],
        )
    if adopted:
        gate.flushed(adopted)
    return len(batch)


def recover_lost_jobs(after_s: float | None = None) -> list[Any]:
    """Hand back jobs left ``running`` by workers silent for ``after_s``; return their ids.

    ``after_s`` defaults to ``ledger.recovery_after_s``. Outcomes those workers left
    in the gate are written first: those jobs ended, and are not handed back.
    """
    if after_s is None:
        after_s = get_settings().ledger.recovery_after_s
    with engine().connect() as conn:
        alive = workers.alive(conn, after_s)
    reconcile(lambda writer: writer.node not in alive, after_s)
    with engine().begin() as conn:
        recovered = workers.recover(conn, after_s)
    if recovered:
        logger.warning("recovered %d jobs from silent workers: %s", len(recovered), recovered)
    return recovered


def largest_rss() -> int | None:
    """Resident bytes of this worker's largest process: this one or a pool child (None if
    the system cannot tell)."""
    try:
        me = psutil.Process()
        sizes = [me.memory_info().rss]
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a child that just exited
                sizes.append(child.memory_info().rss)
    except psutil.Error:
        return None
    return int(max(sizes))


class Heartbeat:
    """The worker's pulse, and the sweep for jobs lost with a silent worker."""

    def __init__(self, hostname: str, queues: list[str], app: Celery | None = None) -> None:
        """``app``: the worker's Celery app, whose broker's unacknowledged messages this
        worker looks after with the others (None: only the ledger's ``running`` jobs)."""
        ledger = get_settings().ledger
        self.hostname = hostname
        self.queues = ",".join(queues)
        self.interval_s = ledger.heartbeat_interval_s
        self.recovery_after_s = ledger.recovery_after_s
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Since when this worker's reports of what it holds have all reached the gate.
        self._reporting_since: float | None = None

    def beat(self) -> None:
        """Say this worker is alive, and how much memory its largest process holds."""
        with engine().begin() as conn:
            workers.beat(conn, self.hostname, os.getpid(), self.queues, largest_rss())

    def recover(self) -> list[Any]:
        """Hand back jobs left ``running`` by workers not heard from; return their ids."""
        return recover_lost_jobs(self.recovery_after_s)

    def report_held(self) -> None:
        """Say in the gate what this worker holds; then, once every report for a whole
        recovery bound has gone through (so every live worker's has too, barring theirs
        failing), hand back the broker's messages no worker holds."""
        if self.app is None:
            return
        try:
            gate.report_held(self.hostname, held_here())
        except redis.RedisError as exc:
            self._reporting_since = None
            logger.warning("could not say which jobs this worker holds: %s", exc)
            return
        now = time.monotonic()
        if self._reporting_since is None:
            self._reporting_since = now
        if now - self._reporting_since >= self.recovery_after_s:
            held = gate.held(self.recovery_after_s)
            restore_unheld(self.app, held, self.recovery_after_s)

    def _run(self) -> None:
        failures = 0
        reachable_since = time.monotonic()
        next_beat = time.monotonic() + self.interval_s
        while not self._stop.wait(min(self.interval_s, RECONCILE_INTERVAL_S)):
            try:
                # Outcomes of this machine's pool processes that died (killed by a
                # task, the OOM killer, a hard time limit) before writing them.
                reconcile(Holder.dead_here, RECONCILE_AFTER_S)
                if time.monotonic() < next_beat:
                    continue
                next_beat = time.monotonic() + self.interval_s
                self._guarded(self.report_held)
                self.beat()
                if failures:
                    reachable_since = time.monotonic()
                failures = 0
                # After an outage every worker's beat is stale: give them a full recovery
                # bound to beat (and write their buffered transitions) before judging them.
                if time.monotonic() - reachable_since >= self.recovery_after_s:
                    self.recover()
            except Exception as exc:  # the database is down: keep beating, quietly
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    logger.warning("heartbeat failed (%d in a row): %s", failures, exc)

    @staticmethod
    def _guarded(step: Callable[[], Any]) -> None:
        """Run ``step``; a failure is logged, and the beat goes on."""
        try:
            step()
        except Exception as exc:
            logger.warning("%s failed: %s", step.__name__, exc)

    def start(self) -> None:
        """Beat now, then every interval in a thread."""
        self._guarded(self.report_held)
        try:
            self.beat()
        except Exception as exc:
            logger.warning("first heartbeat failed: %s", exc)
        self._thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the row stays; recovery waits for it to age).

        The pool has exited by now, having written its batches: what outcomes its
        processes left in the gate are written here, not a recovery bound later.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.app is not None:
            self._guarded(lambda: gate.forget_held(self.hostname))
        try:
            reconcile(Holder.dead_here, 0)
        except Exception as exc:
            logger.warning("could not write the outcomes left by pool processes: %s", exc)
