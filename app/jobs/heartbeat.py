"""Worker heartbeats, and recovery of jobs a dead worker left ``running``.

Each worker's main process upserts its row in ``workers`` every
``ledger.heartbeat_interval_s``. A job still ``running`` on a worker not heard from
for ``ledger.recovery_after_s`` is handed back to the releaser (released now, with
an event saying why). Its first delivery can no longer run: the worker is gone,
and with it the advisory lock of its claim; should the broker also redeliver the
original message, the claim acknowledges whichever delivery comes second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from sqlalchemy import text

from app.db import engine
from config.settings import get_settings

logger = logging.getLogger(__name__)

BEAT = text("""
INSERT INTO workers (hostname, pid, queues, started_at, last_seen)
VALUES (:hostname, :pid, :queues, now(), now())
ON CONFLICT (hostname) DO UPDATE SET pid = EXCLUDED.pid, queues = EXCLUDED.queues,
    last_seen = now()
""")

RECOVER = text("""
WITH lost AS (
    SELECT j.id, j.worker FROM jobs j
    LEFT JOIN workers w ON w.hostname = j.worker
    WHERE j.status = 'running'
      AND j.status_at < now() - make_interval(secs => :after)
      AND (w.hostname IS NULL OR w.last_seen < now() - make_interval(secs => :after))
    FOR UPDATE OF j SKIP LOCKED
), requeued AS (
    UPDATE jobs SET status = 'queued', status_at = now(), release_at = now(),
        publish_options = coalesce(publish_options, '{}'::jsonb)
            || jsonb_build_object('queue', jobs.queue)
    FROM lost WHERE jobs.id = lost.id
    RETURNING jobs.id, lost.worker
)
INSERT INTO job_events (job_id, from_status, to_status, at, detail)
SELECT id, 'running', 'queued', now(),
       'recovered: worker ' || coalesce(worker, '?') || ' stopped heartbeating'
FROM requeued
RETURNING job_id
""")


def recover_lost_jobs(after_s: float | None = None) -> list[Any]:
    """Hand back jobs left ``running`` by workers silent for ``after_s``; return their ids.

    ``after_s`` defaults to ``ledger.recovery_after_s``.
    """
    if after_s is None:
        after_s = get_settings().ledger.recovery_after_s
    with engine().begin() as conn:
        recovered = list(conn.execute(RECOVER, {"after": after_s}).scalars())
    if recovered:
        logger.warning("recovered %d jobs from silent workers: %s", len(recovered), recovered)
    return recovered


class Heartbeat:
    """The worker's pulse, and the sweep for jobs lost with a silent worker."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        ledger = get_settings().ledger
        self.hostname = hostname
        self.queues = ",".join(queues)
        self.interval_s = ledger.heartbeat_interval_s
        self.recovery_after_s = ledger.recovery_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Say this worker is alive."""
        with engine().begin() as conn:
            conn.execute(
                BEAT, {"hostname": self.hostname, "pid": os.getpid(), "queues": self.queues}
            )

    def recover(self) -> list[Any]:
        """Hand back jobs left ``running`` by workers not heard from; return their ids."""
        return recover_lost_jobs(self.recovery_after_s)

    def _run(self) -> None:
        failures = 0
        reachable_since = time.monotonic()
        while not self._stop.wait(self.interval_s):
            try:
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

    def start(self) -> None:
        """Beat now, then every interval in a thread."""
        try:
            self.beat()
        except Exception as exc:
            logger.warning("first heartbeat failed: %s", exc)
        self._thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the row stays; recovery waits for it to age)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
