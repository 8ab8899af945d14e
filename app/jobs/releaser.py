"""Jobs due later wait in PostgreSQL; the releaser publishes them when due.

An ETA or countdown kept in the broker sits in a worker's memory, unacknowledged:
past Redis's visibility timeout it runs twice (celery#2599, kombu#337), and
RabbitMQ's consumer timeout closes the channel holding it (celery#6760). So a
message due later than ``ledger.hold_after_s`` is *held*: written to the job's
row with ``release_at``, and published by a releaser when due. Every worker runs
a releaser thread; ``FOR UPDATE SKIP LOCKED`` lets them share the work without
publishing a job twice, and the claim (app/jobs/claim.py) keeps a message
published twice by a crash between publish and commit from running twice.
The same path makes ``JobService.enqueue(..., connection=…)`` transactional:
the row commits with the caller's transaction, or not at all.

The thread polls adaptively (:class:`~app.polling.AdaptivePoll`): 50 ms after a
round that published something, so a stream of due jobs drains fast, and twice as
long after each empty round, up to 0.5 s. That cap is the fixed interval the
releaser had, on which the promises rest (a held job runs within 2 s of due, a
transactional enqueue is published within a second of its commit), so idle
workers poll no more than they did. Each round's delay is kept in
:attr:`Releaser.rounds` and logged at debug level when it changes.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from kombu.utils import json as kombu_json
from sqlalchemy import Connection

from app.db import engine
from app.jobs.lifecycle import RECORDED_HEADER
from app.jobs.models import JobStatus
from app.jobs.store import release
from app.polling import AdaptivePoll

logger = logging.getLogger(__name__)

#: Publish options a held message keeps (what Celery's retry and routing need).
KEPT_OPTIONS = ("queue", "priority", "retries", "expires", "time_limit", "soft_time_limit")
#: Seconds to the releaser's next round after one that published something.
FAST_INTERVAL_S = 0.05
#: Its longest wait while idle, seconds: a due job waits at most this for a round.
IDLE_INTERVAL_S = 0.5
#: Rounds whose delay :attr:`Releaser.rounds` keeps.
ROUNDS_KEPT = 256


def due_time(headers: dict[str, Any]) -> datetime | None:
    """When a message with these Celery headers is due (None: now)."""
    eta = headers.get("eta")
    if not eta:
        return None
    when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def hold(
    conn: Connection,
    *,
    job_id: str,
    handler: str,
    queue: str,
    args: Any,
    kwargs: Any,
    due: datetime,
    options: dict[str, Any],
) -> bool:
    """Write a held message on ``conn`` (the caller's transaction); True if the job is new."""
    return release.hold(
        conn,
        job_id=job_id,
        handler=handler,
        queue=queue,
        status=JobStatus.SCHEDULED if due > datetime.now(UTC) else JobStatus.QUEUED,
        due=due,
        payload=kombu_json.dumps({"args": list(args or []), "kwargs": dict(kwargs or {})}),
        options=kombu_json.dumps({k: options[k] for k in KEPT_OPTIONS if options.get(k)}),
        detail=f"held until {due.isoformat()}",
    )


def hold_message(
    celery_app: Any,
    name: str,
    headers: dict[str, Any],
    args: Any,
    kwargs: Any,
    queue: str,
    due: datetime,
    priority: int | None = None,
) -> None:
    """Hold a message due at ``due`` in PostgreSQL instead of the broker.

    Called by the producer side (:mod:`app.jobs.publisher`) with the message's
    Celery headers; what its next publish needs is kept as publish options.
    """
    hard, soft = (headers.get("timelimit") or (None, None))[:2]
    options = {
        "queue": queue,
        "priority": priority,
        "retries": headers.get("retries"),
        "expires": headers.get("expires"),
        "time_limit": hard,
        "soft_time_limit": soft,
    }
    with engine().begin() as conn:
        hold(
            conn,
            job_id=str(headers["id"]),
            handler=name,
            queue=queue,
            args=args,
            kwargs=kwargs,
            due=due,
            options=options,
        )


class Releaser:
    """Publishes held messages when due; one thread per worker."""

    def __init__(
        self,
        celery_app: Any,
        interval_s: float = IDLE_INTERVAL_S,
        batch: int = 200,
        fast_s: float = FAST_INTERVAL_S,
    ) -> None:
        self.app = celery_app
        #: The longest wait between rounds (the poll's cap).
        self.interval_s = interval_s
        self.batch = batch
        self.poll = AdaptivePoll(fast_s=min(fast_s, interval_s), cap_s=interval_s, factor=2.0)
        #: ``(published, seconds to the next round)`` of the latest rounds, oldest first.
        self.rounds: deque[tuple[int, float]] = deque(maxlen=ROUNDS_KEPT)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def release_due(self, ids: list[uuid.UUID] | None = None) -> int:
        """Publish held messages that are due now (only ``ids`` if given); return how many.

        Whoever commits a due job (beat, a transactional enqueue) may publish it at
        once this way; a crash before that leaves it to the releaser threads.
        """
        released = 0
        with engine().begin() as conn:
            for row in release.due(conn, self.batch, ids):
                payload, options = row["payload"] or {}, dict(row["publish_options"] or {})
                options.setdefault("queue", row["queue"])
                if isinstance(options.get("expires"), str):
                    options["expires"] = datetime.fromisoformat(options["expires"])
                self.app.send_task(
                    row["handler"],
                    args=payload.get("args") or [],
                    kwargs=payload.get("kwargs") or {},
                    task_id=str(row["id"]),
                    headers={RECORDED_HEADER: True},
                    **options,
                )
                release.released(conn, row, "released when due")
                released += 1
        return released

    def release_round(self) -> float:
        """Publish everything due now, in batches; return the seconds to the next round."""
        published = count = self.release_due()
        while count == self.batch:
            count = self.release_due()
            published += count
        delay = self.poll.next_delay(found_work=published > 0)
        if not self.rounds or self.rounds[-1][1] != delay:
            logger.debug("releaser: published %d, next round in %.3f s", published, delay)
        self.rounds.append((published, delay))
        return delay

    def _run(self) -> None:
        failures = 0
        delay = self.poll.fast_s
        while not self._stop.wait(delay if not failures else min(5.0, failures)):
            try:
                delay = self.release_round()
                failures = 0
            except Exception as exc:  # database or broker down: try again, never die
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    logger.warning("releaser failed (%d in a row): %s", failures, exc)

    def start(self) -> None:
        """Start the releaser thread."""
        self._thread = threading.Thread(target=self._run, name="conveyor-releaser", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its current round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
