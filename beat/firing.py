"""Fires: the unique (schedule, fire time) record and the job it makes, in one transaction.

The record is inserted first; when it exists already, another beat (or this one,
before a handover) fired the slot, and nothing else happens. The job is an outbox
row of the ledger (``release_at`` now): the releaser publishes it once committed,
so a crash after the commit still runs it. A schedule's runs share the job name
``schedule:<name>``, unique among unfinished jobs, which is how the overlap policy
sees a run still going: ``skip`` records the fire as skipped, ``queue_one`` keeps
one job waiting for the name in ``jobs.waits_for`` (the scheduler's
:func:`~app.jobs.store.release.promote_waiting` hands it the name and releases it
once the run ends), ``allow`` gives runs no name.

Every statement on ``conveyor_schedule_fire`` is here, named (the console and
:meth:`~beat.service.ScheduleService.history` read it through its Django model),
retention's delete (:func:`purge`) included.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from app.jobs.models import JobStatus
from app.jobs.store import JobStore
from app.jobs.store.jobs import note, status_of
from beat.plan import Plan

FIRE = text("""
INSERT INTO conveyor_schedule_fire (periodic_task_id, schedule_name, fire_time, fired_at, outcome,
    job_id, beat, detail)
VALUES (:id, :name, :fire_time, now(), :outcome, :job_id, :beat, :detail)
ON CONFLICT (periodic_task_id, fire_time) DO NOTHING
RETURNING fire_time
""")
SETTLE = text("""
UPDATE conveyor_schedule_fire SET outcome = :outcome, job_id = :job_id, detail = :detail
WHERE periodic_task_id = :id AND fire_time = :fire_time
""")

#: Up to ``batch`` fire records written before ``cutoff``, oldest first. A record only
#: guards its slot until the schedule's cursor has passed it, long before any retention.
PURGE = text("""
DELETE FROM conveyor_schedule_fire WHERE id IN (
    SELECT id FROM conveyor_schedule_fire WHERE fired_at < :cutoff
    ORDER BY fired_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
""")


def purge(conn: Connection, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` fire records written before ``cutoff``; how many went."""
    return conn.execute(PURGE, {"cutoff": cutoff, "batch": batch}).rowcount


class Firing:
    """Writes fires: the unique fire record and the job, in the caller's transaction."""

    def __init__(self, celery_app: Any, identity: str) -> None:
        self.app = celery_app
        self.identity = identity
        self.store = JobStore()

    def fire(
        self,
        conn: Connection,
        plan: Plan,
        fire_time: datetime,
        detail: str,
        created: list[uuid.UUID],
        outcome: str = "enqueued",
    ) -> uuid.UUID | None:
        """One fire: its unique record and its job (or the record of why there is none)."""
        claimed = conn.execute(
            FIRE,
            {
                "id": plan.id,
                "name": plan.name,
                "fire_time": fire_time,
                "outcome": "pending",
                "job_id": None,
                "beat": self.identity,
                "detail": detail,
            },
        ).first()
        if claimed is None:
            return None  # fired already (by another beat, before a handover)
        job_id, new = self.job(conn, plan, fire_time, detail)
        if new:
            created.append(job_id)
        else:
            blocking = status_of(conn, job_id)
            if plan.overlap == "queue_one":
                waiting, new = self.job(conn, plan, fire_time, detail, waiting=True)
                if new:
                    outcome, detail = "waiting", f"waits for run {job_id} ({blocking})"
                    job_id = waiting
                else:
                    outcome, detail = "skipped", f"run {job_id} is {blocking} and {waiting} waits"
            else:
                outcome, detail = (
                    "skipped",
                    f"run {job_id} is still {blocking} (overlap policy skip)",
                )
            note(conn, job_id, f"fire {fire_time.isoformat()} of {plan.name!r}: {detail}")
        conn.execute(
            SETTLE,
            {
                "outcome": outcome,
                "job_id": job_id,
                "detail": detail,
                "id": plan.id,
                "fire_time": fire_time,
            },
        )
        return job_id if new else None

    def record(
        self,
        conn: Connection,
        plan: Plan,
        fire_time: datetime,
        outcome: str,
        job_id: Any,
        detail: str,
    ) -> None:
        """The record of a fire that makes no job (a misfire the policy skipped)."""
        conn.execute(
            FIRE,
            {
                "id": plan.id,
                "name": plan.name,
                "fire_time": fire_time,
                "outcome": outcome,
                "job_id": job_id,
                "beat": self.identity,
                "detail": detail,
            },
        )

    def job(
        self, conn: Connection, plan: Plan, fire_time: datetime, detail: str, waiting: bool = False
    ) -> tuple[uuid.UUID, bool]:
        """The fire's job, or the unfinished one holding its name; (id, created)."""
        queue = plan.queue or self.app.amqp.router.route({}, plan.task)["queue"].name
        name = None if plan.overlap == "allow" else f"schedule:{plan.name}"
        options: dict[str, Any] = {"queue": queue}
        if plan.priority is not None:
            options["priority"] = plan.priority
        return self.store.create(
            {
                "id": uuid.uuid4(),
                "handler": plan.task,
                "queue": queue,
                "payload": {"args": plan.args, "kwargs": plan.kwargs},
                "metadata": {
                    "schedule": plan.name,
                    "schedule_id": plan.id,
                    "fire_time": fire_time.isoformat(),
                    "beat": self.identity,
                    **({"note": detail} if detail else {}),
                },
                # A waiting run takes the name only when the run holding it ends.
                "job_name": None if waiting else name,
                "waits_for": name if waiting else None,
                "schedule": plan.expression,
                "status": JobStatus.SCHEDULED if waiting else JobStatus.QUEUED,
                "due_at": fire_time,
                "release_at": None if waiting else datetime.now(UTC),
                "publish_options": options,
                "enqueued_at": None,
            },
            conn,
        )
