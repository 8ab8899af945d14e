"""Tables of the job ledger (SQLAlchemy 2.0); Alembic migrations create them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobStatus(StrEnum):
    """Where a job is in its life. Finished states never change again, but by requeue."""

    SCHEDULED = "scheduled"  #: due later; waits in PostgreSQL, not in the broker
    QUEUED = "queued"  #: published to the broker
    RUNNING = "running"  #: a worker is executing it
    RETRYING = "retrying"  #: failed, another attempt is scheduled
    COMPLETED = "completed"  #: returned a result
    FAILED = "failed"  #: failed for good (not dead-lettered: e.g. a revoked chain member)
    CANCELLED = "cancelled"  #: an operator cancelled it; it never runs again
    DEAD = "dead"  #: failed for good: the dead-letter queue, until requeued or purged


#: States a job leaves only by an operator's requeue.
FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.DEAD})
#: States in which a job may still run.
UNFINISHED = frozenset(JobStatus) - FINISHED

#: The unique index that keeps a job name to one unfinished job.
ACTIVE_NAME_INDEX = "ux_jobs_active_name"
#: The unique index that keeps one unfinished job waiting for a name (``waits_for``).
WAITING_INDEX = "ux_jobs_waiting"
#: The partial index of the jobs the notifier has to deal with, and its condition: a
#: finish not dealt with yet, of a dead job (its task's pattern may name recipients) or
#: of one whose caller asked to hear of it.
NOTICE_INDEX = "ix_jobs_notice_due"
NOTICE_DUE = (
    f"finished_at IS NOT NULL AND (status = '{JobStatus.DEAD.value}' OR notify_to IS NOT NULL)"
    " AND notified_finished_at IS DISTINCT FROM finished_at"
)


class Base(DeclarativeBase):
    """Declarative base of the ledger's tables."""

    metadata = MetaData(naming_convention={"ix": "ix_%(table_name)s_%(column_0_N_name)s"})


class Job(Base):
    """One job: a task invocation, identified by its Celery task id."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    handler: Mapped[str] = mapped_column(String(200))
    job_name: Mapped[str | None] = mapped_column(String(200))
    #: The name of the unfinished run this job waits for (a schedule's overlap policy
    #: ``queue_one``); it takes that name and is released when that run ends.
    waits_for: Mapped[str | None] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    schedule: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    #: When the current status was reached (events may arrive out of order).
    status_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    deliveries: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: How far a running job says it is (0-100), what it says it does, and when it said so
    #: (``ConveyorTask.progress``).
    progress: Mapped[int | None] = mapped_column(SmallInteger)
    progress_message: Mapped[str | None] = mapped_column(Text)
    progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When the releaser must publish this job's message; NULL once published. Delayed
    #: jobs, retries due later and transactional enqueues wait here, not in the broker.
    release_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: How to publish it then (queue, retries, priority).
    publish_options: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: Who its caller asked to be mailed when it finishes (``notify=`` on enqueue).
    notify_to: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    #: The ``finished_at`` of the finish the notifier has dealt with (mailed, or nobody to
    #: tell): a requeued job that finishes again is due once more.
    notified_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("progress BETWEEN 0 AND 100", name="ck_jobs_progress"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_handler_created", "handler", "created_at"),
        Index("ix_jobs_queue_created", "queue", "created_at"),
        Index("ix_jobs_created", "created_at"),
        Index(
            ACTIVE_NAME_INDEX,
            "job_name",
            unique=True,
            postgresql_where=text(
                "job_name IS NOT NULL AND status IN ('scheduled','queued','running','retrying')"
            ),
        ),
        Index(
            WAITING_INDEX,
            "waits_for",
            unique=True,
            postgresql_where=text(
                "waits_for IS NOT NULL AND status IN ('scheduled','queued','running','retrying')"
            ),
        ),
        Index("ix_jobs_release", "release_at", postgresql_where=text("release_at IS NOT NULL")),
        Index("ix_jobs_running_worker", "worker", postgresql_where=text("status = 'running'")),
        # What /metrics reads: the jobs that finished in its window (migration 0007).
        Index("ix_jobs_finished", "finished_at", postgresql_where=text("finished_at IS NOT NULL")),
        # What the notifier reads: finished jobs someone may hear of, not dealt with yet
        # (migration 0012). It holds only those, so a look at it costs nothing when idle.
        Index(NOTICE_INDEX, "finished_at", postgresql_where=text(NOTICE_DUE)),
    )


class WorkerBeat(Base):
    """The last sign of life of one worker (its Celery node name)."""

    __tablename__ = "workers"

    hostname: Mapped[str] = mapped_column(String(200), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Resident memory of the worker's largest process (main or pool child) at that beat.
    rss_bytes: Mapped[int | None] = mapped_column(BigInteger)


class JobEvent(Base):
    """One state change of one job."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempt: Mapped[int] = mapped_column(Integer, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_job_events_job_at", "job_id", "at", "id"),
        # What /metrics reads: the retries recorded in its window (migration 0007).
        Index("ix_job_events_retrying_at", "at", postgresql_where=text("to_status = 'retrying'")),
    )
