"""JobStore: one job at a time, and pages of them (SQLAlchemy Core over psycopg).

The driver's errors become Conveyor's here: no such job is :class:`JobNotFound`, a
state the operation does not allow :class:`InvalidTransition`, and a unique index
of names refusing a job back into an unfinished state :class:`JobNameTaken`.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from app.db import engine
from app.errors import InvalidTransition, JobNameTaken, JobNotFound
from app.jobs.models import ACTIVE_NAME_INDEX, WAITING_INDEX, Job, JobEvent, JobStatus
from app.jobs.store.queries import (
    JOB_STATUS,
    NOTE_EVENT,
    PURGE,
    SET_PROGRESS,
    UNFINISHED_STATES,
)

JOBS: Table = Job.__table__  # type: ignore[assignment]
EVENTS: Table = JobEvent.__table__  # type: ignore[assignment]

#: The unique index of names that refused a row → the column holding the name it refused.
NAME_INDEXES = {ACTIVE_NAME_INDEX: "job_name", WAITING_INDEX: "waits_for"}


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """An opaque cursor for the page after (created_at, id)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor stands for; ``ValueError`` naming it when malformed."""
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cursor {cursor!r} is not one this API returned") from exc


def refused_index(exc: IntegrityError) -> str | None:
    """The name of the unique index that refused a write, if the driver says."""
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


class JobStore:
    """The ledger's repository."""

    def __init__(self, db: Engine | None = None) -> None:
        self.db = db or engine()

    def create(self, row: dict[str, Any], conn: Connection | None = None) -> tuple[uuid.UUID, bool]:
        """Insert a job unless its idempotency key, active name or waiting name (``waits_for``)
        exists; (id, created).

        With ``conn`` the insert joins the caller's transaction (and commits with it).
        """
        if conn is None:
            with self.db.begin() as own:
                return self.create(row, own)
        now = datetime.now(UTC)
        # An empty key or name is no key or name (it would match nothing on conflict).
        row = {**row, "idempotency_key": row.get("idempotency_key") or None}
        row["job_name"] = row.get("job_name") or None
        values = {
            "status": JobStatus.QUEUED,
            "status_at": now,
            "created_at": now,
            "enqueued_at": now,
            **row,
        }
        created = conn.execute(
            pg_insert(JOBS).values(**values).on_conflict_do_nothing().returning(JOBS.c.id)
        ).scalar()
        if created is not None:
            conn.execute(
                insert(EVENTS).values(
                    job_id=created,
                    from_status=None,
                    to_status=values["status"],
                    at=now,
                    detail="enqueued",
                )
            )
            return created, True
        clauses = []
        if row.get("idempotency_key"):
            clauses.append(JOBS.c.idempotency_key == row["idempotency_key"])
        for column in NAME_INDEXES.values():
            if row.get(column):
                clauses.append(
                    and_(JOBS.c[column] == row[column], JOBS.c.status.in_(UNFINISHED_STATES))
                )
        existing = (
            conn.execute(select(JOBS.c.id).where(or_(*clauses))).scalar() if clauses else None
        )
        if existing is None:
            raise RuntimeError(f"job {row.get('id')} conflicted with no idempotency key or name")
        return existing, False

    def get(self, job_id: uuid.UUID | str) -> dict[str, Any]:
        """The job as a dict; :class:`JobNotFound` if there is none."""
        with self.db.connect() as conn:
            row = conn.execute(select(JOBS).where(JOBS.c.id == _uuid(job_id))).mappings().first()
        if row is None:
            raise JobNotFound(job_id)
        return dict(row)

    def get_by_name(self, name: str) -> dict[str, Any] | None:
        """The newest job with this name, if any."""
        with self.db.connect() as conn:
            row = (
                conn.execute(
                    select(JOBS).where(JOBS.c.job_name == name).order_by(JOBS.c.created_at.desc())
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def history(self, job_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """Every state change of the job, oldest first."""
        self.get(job_id)
        with self.db.connect() as conn:
            rows = conn.execute(
                select(EVENTS)
                .where(EVENTS.c.job_id == _uuid(job_id))
                .order_by(EVENTS.c.at, EVENTS.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def list(
        self,
        *,
        status: str | None = None,
        handler: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs newest first, filtered, one page; returns the page and the next cursor."""
        query = select(JOBS).order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc()).limit(limit)
        for column, value in (
            (JOBS.c.status, status),
            (JOBS.c.handler, handler),
            (JOBS.c.queue, queue),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(JOBS.c.created_at >= since)
        if until is not None:
            query = query.where(JOBS.c.created_at < until)
        if cursor is not None:
            created, job_id = decode_cursor(cursor)
            query = query.where(tuple_(JOBS.c.created_at, JOBS.c.id) < tuple_(created, job_id))
        with self.db.connect() as conn:
            rows = [dict(row) for row in conn.execute(query).mappings()]
        next_cursor = (
            encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == limit else None
        )
        return rows, next_cursor

    def delete(self, job_id: uuid.UUID | str, finished: set[str]) -> None:
        """Delete a job in one of the ``finished`` states, with its events."""
        with self.db.begin() as conn:
            status = conn.execute(
                select(JOBS.c.status).where(JOBS.c.id == _uuid(job_id)).with_for_update()
            ).scalar()
            if status is None:
                raise JobNotFound(job_id)
            if status not in finished:
                raise InvalidTransition(job_id, status, "deleted before it is cancelled")
            conn.execute(EVENTS.delete().where(EVENTS.c.job_id == _uuid(job_id)))
            conn.execute(JOBS.delete().where(JOBS.c.id == _uuid(job_id)))

    def progress(self, job_id: uuid.UUID | str, percent: int, message: str | None) -> bool:
        """Store a running job's progress; False if the job is not (or not yet) running."""
        with self.db.begin() as conn:
            found = conn.exec_driver_sql(
                SET_PROGRESS,
                {
                    "id": _uuid(job_id),
                    "progress": percent,
                    "message": message,
                    "running": JobStatus.RUNNING.value,
                },
            ).rowcount
        return bool(found)

    def transition(
        self,
        job_id: uuid.UUID | str,
        allowed: set[str],
        to_status: str,
        operation: str,
        detail: str,
        **changes: Any,
    ) -> dict[str, Any]:
        """Move a job from one of ``allowed`` states to ``to_status`` now, with an event.

        :class:`JobNameTaken` when the job would be unfinished again while another
        unfinished job holds its name (or, for a waiting job, waits for the same name).
        """
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            current = (
                conn.execute(select(JOBS).where(JOBS.c.id == _uuid(job_id)).with_for_update())
                .mappings()
                .first()
            )
            if current is None:
                raise JobNotFound(job_id)
            if current["status"] not in allowed:
                raise InvalidTransition(job_id, current["status"], operation)
            try:
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.id == current["id"])
                    .values(status=to_status, status_at=now, **changes)
                )
            except IntegrityError as exc:
                column = NAME_INDEXES.get(refused_index(exc) or "")
                if column is None:
                    raise
                raise JobNameTaken(
                    job_id, current[column], operation, waiting=column == "waits_for"
                ) from None
            conn.execute(
                insert(EVENTS).values(
                    job_id=current["id"],
                    from_status=current["status"],
                    to_status=to_status,
                    at=now,
                    detail=detail,
                )
            )
        return dict(current)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise JobNotFound(value) from exc


def status_of(conn: Connection, job_id: uuid.UUID | str) -> str | None:
    """The job's state, on the caller's connection; None if there is no such job."""
    status = conn.exec_driver_sql(JOB_STATUS, {"id": _uuid(job_id)}).scalar()
    return None if status is None else str(status)


def note(conn: Connection, job_id: uuid.UUID | str, detail: str) -> None:
    """Add an event that changes no state to the job's history (the caller's transaction)."""
    conn.exec_driver_sql(NOTE_EVENT, {"id": _uuid(job_id), "detail": detail})


def purge(conn: Connection, statuses: list[str], cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` jobs in ``statuses`` that ended before ``cutoff``, with their
    events; how many went. Jobs another purge is deleting are skipped."""
    return conn.exec_driver_sql(
        PURGE, {"statuses": statuses, "cutoff": cutoff, "batch": batch}
    ).rowcount
