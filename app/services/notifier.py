"""Conveyor's built-in notifier: mail about finished jobs, each mail a job of its own.

A dead job is mailed to the addresses of every ``notifications.dead_jobs`` pattern its
task's name matches (``{"reports.*": [...], "*": [...]}``); a job enqueued with
``notify=[...]`` is mailed to those addresses when it finishes, however it ends. Both
get one mail between them, sent by the ``emails.job_notice`` task (so an SMTP outage
is retried under the task's policy and a refusal is in the ledger).

Every two seconds one host (a singleton) reads the finishes not dealt with yet (a
partial index holds only those: the look is free when there are none), enqueues the
mails *in the same transaction* that marks the finishes dealt with, and commits: a
crash at any point leaves either both or neither, so no finish gets two mail jobs or
none. (The mail job itself is delivered at least once, as every job is: a worker
killed between the SMTP server's answer and the job's outcome sends it again.) A
requeued job that finishes again is due again. The mail about a mail job that
went dead is never sent (that would loop through a broken SMTP server).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence

from app.db import engine
from app.jobs.models import JobStatus
from app.jobs.service import JobService
from app.jobs.store import notices
from app.services.base import Mode, Service
from config.settings import get_settings

logger = logging.getLogger(__name__)

#: The task that sends one job's mail (tasks/notifications.py).
NOTICE_TASK = "emails.job_notice"
#: Finishes read per transaction; an iteration reads batches until one is short.
BATCH = 200
#: Batches per iteration at most, so that the service's heartbeat and shutdown keep time.
MAX_BATCHES = 10


def recipients(
    handler: str,
    status: str,
    notify_to: Sequence[str] | None,
    rules: Mapping[str, Sequence[str]],
) -> list[str]:
    """Who hears of this finish: the caller's ``notify_to``, and for a dead job the
    addresses of each pattern ``handler`` matches; each address once, in that order."""
    found = list(notify_to or ())
    if status == JobStatus.DEAD and handler != NOTICE_TASK:
        for pattern, addresses in rules.items():
            if fnmatch.fnmatchcase(handler, pattern):
                found.extend(addresses)
    return list(dict.fromkeys(found))


class Notifier(Service):
    """Mail the finishes someone is to hear of; mark every finish it looked at."""

    name = "conveyor.notifier"
    every = "2s"
    mode = Mode.SINGLETON

    def iterate(self) -> int:
        """Enqueue the mails due; how many."""
        rules = get_settings().notifications.dead_jobs
        service = JobService()
        mailed = looked = 0
        for _ in range(MAX_BATCHES):
            with engine().begin() as conn:
                due = notices.due(conn, BATCH)
                for row in due:
                    to = recipients(row["handler"], row["status"], row["notify_to"], rules)
                    if not to:
                        continue
                    finish = row["finished_at"].isoformat()
                    service.enqueue(
                        NOTICE_TASK,
                        {"job_id": str(row["id"]), "to": to, "finished_at": finish},
                        idempotency_key=f"notice:{row['id']}:{finish}",
                        metadata={"about_job": str(row["id"])},
                        connection=conn,
                    )
                    mailed += 1
                notices.dealt_with(conn, [row["id"] for row in due])
            looked += len(due)
            if len(due) < BATCH:
                break
        if mailed:
            logger.info("notifier: %d mail(s) enqueued for %d finish(es)", mailed, looked)
        self.detail = {"last_mailed": mailed, "last_looked_at": looked}
        return mailed
