"""A dead worker's unacknowledged messages on Redis, handed back within the recovery bound.

On Redis, kombu keeps each message a worker has received and not acknowledged in
the broker's ``unacked`` hash (with its delivery time in ``unacked_index``) and puts
it back on its queue only once ``broker.visibility_timeout_s`` (an hour by default)
has passed. RabbitMQ does the same when the worker's connection closes. So on
Redis, a worker killed outright (SIGKILL, the OOM killer, a lost host) would strand
what it had received but not finished for that hour: the jobs the ledger shows
``running`` come back through recovery (:mod:`app.jobs.heartbeat`), but not the
ones it had reserved, nor those whose start PostgreSQL had not yet been told.

Each worker therefore says at every heartbeat which jobs it holds (received,
reserved or running: Celery's ``celery.worker.state.requests``; a
message with an ETA, which waits in the worker's timer until then, counts from its
ETA instead), in the delivery gate
(:meth:`app.jobs.gate.Gate.report_held`). :func:`restore_unheld` puts back on its
queue every message delivered more than ``ledger.recovery_after_s`` ago whose job no
worker reported holding within that time, with kombu's own restore and under its
lock, as the visibility timeout would. A live worker reports what it holds every
heartbeat, well within the bound, so only a silent worker's messages go back.
Should a message a live worker holds go back all the same (its reports failed
for the whole bound), the delivery gate still runs the job once: the second
delivery finds the first one's lock or outcome.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from celery import Celery
from celery.worker import state
from kombu.transport.redis import Mutex, MutexHeld

logger = logging.getLogger(__name__)

#: Messages looked at per sweep, at most (the oldest first).
SWEEP_LIMIT = 1000


def held_here() -> set[str]:
    """Ids of the jobs this worker holds: received, reserved or running (Celery's own
    map of the requests it knows; copied in one step, under the GIL)."""
    return set(state.requests)


class Entry(NamedTuple):
    """What one entry of kombu's ``unacked`` hash says of its message."""

    job: str | None
    #: The message's ETA (a countdown up to ``ledger.hold_after_s``), epoch seconds.
    eta: float | None = None


def entry_of(raw: bytes | str) -> Entry:
    """Read one entry of kombu's ``unacked`` hash: ``[message, exchange, routing key]``."""
    try:
        message = json.loads(raw)[0]
        headers = message.get("headers") or {}
        job = headers.get("id") or (message.get("properties") or {}).get("correlation_id")
    except (ValueError, TypeError, LookupError, AttributeError):
        return Entry(None)
    try:
        eta = datetime.fromisoformat(headers["eta"]).timestamp() if headers.get("eta") else None
    except (ValueError, TypeError):
        eta = None
    return Entry(str(job) if job else None, eta)


def restore_unheld(app: Celery, held: Iterable[str], older_than_s: float) -> list[str]:
    """Put back on their queues the messages delivered more than ``older_than_s`` ago
    whose jobs are not in ``held``; return those jobs' ids. Does nothing unless the
    broker is Redis, or while another process restores (kombu's lock)."""
    keep = set(held)
    restored: list[str] = []
    pool: Any = app.pool  # the app's broker connections (its type stubs say producers)
    with pool.acquire(block=True) as conn:
        if conn.transport.driver_type != "redis":
            return []
        channel: Any = conn.default_channel
        qos = channel.qos
        with channel.conn_or_acquire() as client:
            try:
                with Mutex(client, channel.unacked_mutex_key, channel.unacked_mutex_expire):
                    ceiling = time.time() - older_than_s
                    tags = client.zrange(
                        channel.unacked_index_key,
                        0,
                        ceiling,
                        byscore=True,
                        offset=0,
                        num=SWEEP_LIMIT,
                    )
                    for tag in tags:
                        raw = client.hget(channel.unacked_key, tag)
                        if raw is None:  # acknowledged meanwhile
                            continue
                        job, eta = entry_of(raw)
                        if job is not None and job in keep:
                            continue
                        # A worker holds a message with an ETA in its timer until then,
                        # outside what it reports: it counts from its ETA.
                        if eta is not None and eta > ceiling:
                            continue
                        qos.restore_by_tag(tag, client)
                        restored.append(job or f"(message {tag!r} without a job id)")
            except MutexHeld:
                return []
    if restored:
        logger.warning(
            "handed back %d messages no live worker holds (unacknowledged for over %.0fs): %s",
            len(restored),
            older_than_s,
            restored,
        )
    return restored
