"""JobService: the producer API used by application code, the web layer and the CLI."""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery.utils.imports import symbol_by_name
from kombu.utils import json as kombu_json
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection

from app.celery import app as default_app
from app.errors import (
    BrokerUnavailable,
    GateUnavailable,
    InvalidOption,
    InvalidPayload,
    InvalidSchedule,
    JobNotFound,
    PayloadTooLarge,
    ScheduleNotFound,
    UnknownHandler,
)
from app.jobs.gate import gate
from app.jobs.lifecycle import RECORDED_HEADER
from app.jobs.models import FINISHED, JobStatus
from app.jobs.store import JobStore
from app.schedule import next_fire_times
from config.settings import EmailAddress, get_settings, mask_url

logger = logging.getLogger(__name__)

#: What ``enqueue`` accepts as a schedule.
Schedule = str | datetime | timedelta | None

#: The most addresses ``notify=`` takes.
MAX_NOTIFY = 20
_ADDRESSES: TypeAdapter[list[str]] = TypeAdapter(list[EmailAddress])


def recipients(notify: Sequence[str] | None) -> list[str] | None:
    """``notify=`` checked: the addresses, each once, or None for nobody;
    :class:`InvalidOption` naming the first wrong one (``notify.1``)."""
    if notify is None:
        return None
    if isinstance(notify, str):
        raise InvalidOption("notify", "must be a list of addresses, not one string")
    try:
        addresses = _ADDRESSES.validate_python(list(notify))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(["notify", *(str(part) for part in error["loc"])])
        raise InvalidOption(where, str(error["msg"]).removeprefix("Value error, ")) from None
    unique = list(dict.fromkeys(addresses))
    if len(unique) > MAX_NOTIFY:
        raise InvalidOption("notify", f"names {len(unique)} addresses; at most {MAX_NOTIFY}")
    return unique or None


CANCELLABLE = {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING}
REQUEUEABLE = {JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED}


class JobService:
    """Enqueue, inspect, cancel and requeue jobs; every job is in the ledger first.

    A *recurring* job (``enqueue`` with a cron expression or ``@every``) is a schedule
    under its job name, which beat fires like any other; the schedules belong to the
    service the app's ``conveyor_schedules`` names (beat's ``ScheduleService``): this
    layer knows it by name, as it knows tasks.
    """

    def __init__(
        self, celery_app: Any = None, store: JobStore | None = None, schedules: Any = None
    ) -> None:
        self.app = celery_app or default_app
        self.store = store or JobStore()
        self._schedules = schedules

    @property
    def schedules(self) -> Any:
        """The schedule service recurring jobs are kept by."""
        if self._schedules is None:
            self._schedules = symbol_by_name(self.app.conf.conveyor_schedules)()
        return self._schedules

    def handlers(self) -> dict[str, Any]:
        """Registered handlers by name (Celery's own tasks left out)."""
        self.app.loader.import_default_modules()
        return {
            name: task for name, task in self.app.tasks.items() if not name.startswith("celery.")
        }

    def validate(self, handler: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        """The payload, checked against the handler's schema and the size limit."""
        handlers = self.handlers()
        if handler not in handlers:
            raise UnknownHandler(handler, handlers)
        payload = dict(payload or {})
        model = getattr(handlers[handler], "payload_model", None)
        if model is not None:
            try:
                payload = model.model_validate(payload).model_dump(mode="json")
            except ValidationError as exc:
                problems = [
                    (".".join(str(p) for p in error["loc"]) or "payload", error["msg"])
                    for error in exc.errors(include_url=False)
                ]
                raise InvalidPayload(handler, problems) from None
        size = len(kombu_json.dumps(payload).encode())
        limit = get_settings().ledger.max_payload_bytes
        if size > limit:
            raise PayloadTooLarge(handler, size, limit)
        return payload

    def enqueue(
        self,
        handler: str,
        payload: dict[str, Any] | None = None,
        *,
        job_name: str | None = None,
        schedule: Schedule = None,
        queue: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        notify: Sequence[str] | None = None,
        connection: Connection | None = None,
    ) -> uuid.UUID:
        """Record and publish a job; an existing key or active name returns that job instead.

        ``schedule``: None or ``"@once"`` (now), a datetime, or a timedelta from now: the
        job runs once. A cron expression (``"*/15 * * * *"``, ``"@daily"``, in the
        ``timezone`` setting) or an interval (``"@every 30s"``) makes a *recurring* job:
        a schedule named ``job_name`` (required), each fire of which is a job of its own;
        its id is returned, and :meth:`update_schedule` and :meth:`delete` take it.
        With ``connection`` the job joins the caller's transaction: it is published
        (by the releaser, within a second) if and only if that transaction commits.
        ``notify``: addresses mailed when the job finishes, whichever way (the
        notifier of the services process sends it; a one-off job only).
        """
        payload = self.validate(handler, payload)
        notify_to = recipients(notify)
        if isinstance(schedule, str) and schedule.strip() != "@once":
            if notify_to:
                raise InvalidOption("notify", "is for one-off jobs, not a recurring schedule")
            return self._recurring(handler, payload, job_name, schedule, queue, connection)
        due = self.due(schedule)
        queue = queue or self.app.amqp.router.route({}, handler)["queue"].name
        now = datetime.now(UTC)
        horizon = timedelta(seconds=get_settings().ledger.hold_after_s)
        held = connection is not None or due > now + horizon
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "handler": handler,
            "queue": queue,
            "payload": {"args": [], "kwargs": payload},
            "metadata": metadata or {},
            "job_name": job_name,
            "idempotency_key": idempotency_key,
            "schedule": None if schedule is None else str(schedule),
            "due_at": due,
            "notify_to": notify_to,
        }
        if held:
            row.update(
                status=JobStatus.SCHEDULED if due > now else JobStatus.QUEUED,
                release_at=due,
                publish_options={"queue": queue},
                enqueued_at=None,
            )
        job_id, created = self.store.create(row, connection)
        if created and not held:
            self._publish(job_id, handler, [], payload, queue, eta=due if due > now else None)
        return job_id

    def _recurring(
        self,
        handler: str,
        payload: dict[str, Any],
        job_name: str | None,
        expression: str,
        queue: str | None,
        connection: Connection | None,
    ) -> uuid.UUID:
        """A schedule named ``job_name`` firing ``handler``; an existing one made by this
        method under that name, for the same handler, is returned instead."""
        self.due(expression)  # InvalidSchedule naming what is wrong with the expression
        if not job_name:
            raise InvalidSchedule(expression, "a recurring job needs a job_name: its schedule's")
        if connection is not None:
            raise InvalidSchedule(expression, "a recurring job cannot join a transaction")
        schedules = self.schedules
        try:
            existing = schedules.get(job_name)
        except ScheduleNotFound:
            existing = None
        if existing is not None and existing.get("job_id") and existing["task"] == handler:
            return uuid.UUID(str(existing["job_id"]))
        job_id = uuid.uuid4()
        schedules.create(
            job_name, handler, expression, kwargs=payload, queue=queue, job_id=job_id, actor="code"
        )
        return job_id

    def recurring(self, job_id: uuid.UUID | str) -> dict[str, Any] | None:
        """The schedule that is the recurring job ``job_id``, or None if it is none."""
        name = self.schedules.name_of(job_id)
        return None if name is None else dict(self.schedules.get(name))

    @staticmethod
    def due(schedule: Schedule) -> datetime:
        """When a job with ``schedule`` is due; :class:`InvalidSchedule` naming it if unusable."""
        now = datetime.now(UTC)
        if schedule is None or schedule == "@once":
            return now
        if isinstance(schedule, str):
            return next_fire_times(schedule, get_settings().timezone, 1, after=now)[0]
        if isinstance(schedule, timedelta):
            if schedule < timedelta(0):
                raise InvalidSchedule(schedule, "a delay cannot be negative")
            return now + schedule
        if isinstance(schedule, datetime):
            if schedule.tzinfo is None:
                raise InvalidSchedule(schedule, "give a time zone (naive times are ambiguous)")
            return schedule
        raise InvalidSchedule(
            schedule,
            "use None or '@once' (now), a cron expression, a timezone-aware datetime, "
            "or a timedelta",
        )

    def _publish(
        self,
        job_id: uuid.UUID,
        handler: str,
        args: list[Any],
        kwargs: dict[str, Any],
        queue: str,
        eta: datetime | None = None,
    ) -> None:
        try:
            self.app.send_task(
                handler,
                args=args,
                kwargs=kwargs,
                task_id=str(job_id),
                queue=queue,
                eta=eta,
                headers={RECORDED_HEADER: True},
            )
        except BrokerUnavailable as exc:
            self.store.transition(
                job_id,
                set(JobStatus),
                JobStatus.FAILED,
                "published",
                f"not published: {exc}",
                last_error=str(exc),
            )
            raise

    def get(self, job_id: uuid.UUID | str) -> dict[str, Any]:
        """One job; :class:`~app.errors.JobNotFound` if there is none."""
        return self.store.get(job_id)

    def get_by_name(self, name: str) -> dict[str, Any] | None:
        """The newest job named ``name``."""
        return self.store.get_by_name(name)

    def history(self, job_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """The job's state changes, oldest first."""
        return self.store.history(job_id)

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
        """A page of jobs, newest first, and the cursor of the next page."""
        return self.store.list(
            status=status,
            handler=handler,
            queue=queue,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    def matching(
        self,
        statuses: Iterable[str],
        *,
        handler: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> builtins.list[uuid.UUID]:
        """The ids of at most ``limit`` jobs in ``statuses`` that match the filters, newest
        first within each status: what a bulk requeue, cancel or purge takes."""
        found: builtins.list[uuid.UUID] = []
        for status in statuses:
            cursor = None
            while len(found) < limit:
                rows, cursor = self.list(
                    status=status,
                    handler=handler,
                    queue=queue,
                    since=since,
                    until=until,
                    limit=min(500, limit - len(found)),
                    cursor=cursor,
                )
                found.extend(row["id"] for row in rows)
                if cursor is None:
                    break
        return found[:limit]

    def active(self, limit: int = 1000) -> builtins.list[dict[str, Any]]:
        """Jobs not finished yet, as the job module means it: scheduled, queued, retrying
        and running, soonest first (by due time, then creation)."""
        found: builtins.list[dict[str, Any]] = []
        for status in (
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.RETRYING,
            JobStatus.SCHEDULED,
        ):
            found.extend(self.list(status=status, limit=limit)[0])
        epoch = datetime.min.replace(tzinfo=UTC)
        found.sort(
            key=lambda job: (job.get("due_at") or job["created_at"] or epoch, job["created_at"])
        )
        return found[:limit]

    def failed(self) -> builtins.list[dict[str, Any]]:
        """Jobs that failed for good or wait in the dead-letter queue."""
        return (
            self.list(status=JobStatus.DEAD, limit=1000)[0]
            + self.list(status=JobStatus.FAILED, limit=1000)[0]
        )

    def cancel(self, job_id: uuid.UUID | str, terminate: bool = False) -> None:
        """Cancel a job that has not run yet (it never will), or a running one if asked."""
        allowed = CANCELLABLE | ({JobStatus.RUNNING} if terminate else set())
        self._reach_gate("cancel", job_id)
        before = self.store.transition(
            job_id,
            set(allowed),
            JobStatus.CANCELLED,
            "cancelled",
            "cancelled by request",
            finished_at=datetime.now(UTC),
            release_at=None,
        )
        try:  # a delivery already in the broker must find it cancelled
            gate.mark(str(before["id"]), JobStatus.CANCELLED)
        except redis.RedisError as exc:
            raise GateUnavailable("cancel", job_id, mask_url(gate.url), exc) from exc
        if before["status"] == JobStatus.RUNNING:
            self.app.control.revoke(str(before["id"]), terminate=True, signal="SIGTERM")

    @staticmethod
    def _reach_gate(action: str, job_id: uuid.UUID | str) -> None:
        try:
            gate.client().ping()
        except redis.RedisError as exc:
            raise GateUnavailable(action, job_id, mask_url(gate.url), exc) from exc

    def update_schedule(self, job_id: uuid.UUID | str, schedule: Schedule) -> datetime:
        """Move a job that waits in PostgreSQL to a new due time, or give a recurring job
        a new cron expression (beat follows within its reload interval); return the next
        due time."""
        due = self.due(schedule)
        try:
            self.store.transition(
                job_id,
                {JobStatus.SCHEDULED},
                JobStatus.SCHEDULED,
                "rescheduled",
                f"rescheduled to {due.isoformat()}",
                due_at=due,
                release_at=due,
                schedule=None if schedule is None else str(schedule),
            )
        except JobNotFound:
            name = self.schedules.name_of(job_id)
            if name is None:
                raise
            if not isinstance(schedule, str) or schedule.strip() == "@once":
                raise InvalidSchedule(
                    schedule, "a recurring job's schedule is a cron expression or @every"
                ) from None
            self.schedules.update(name, cron=schedule, actor="code")
        return due

    def delete(self, job_id: uuid.UUID | str) -> None:
        """Remove a finished job and its history (an unfinished one must be cancelled
        first), or a recurring job's schedule (the jobs it fired stay)."""
        try:
            self._remove(job_id, set(FINISHED))
        except JobNotFound:
            name = self.schedules.name_of(job_id)
            if name is None:
                raise
            self.schedules.delete(name, actor="code")

    def purge(self, job_id: uuid.UUID | str) -> None:
        """Remove a dead job and its history from the dead-letter queue, for good.

        :class:`~app.errors.InvalidTransition` for a job that is not dead.
        """
        self._remove(job_id, {JobStatus.DEAD})

    def _remove(self, job_id: uuid.UUID | str, finished: set[str]) -> None:
        self.store.delete(job_id, finished=finished)
        try:
            gate.forget(str(job_id))
        except redis.RedisError as exc:  # its key expires on its own
            logger.warning("gate could not forget deleted job %s: %s", job_id, exc)

    def requeue(self, job_id: uuid.UUID | str) -> uuid.UUID:
        """Run a failed, dead or cancelled job again from its stored payload, same id.

        :class:`~app.errors.JobNameTaken` when another unfinished job holds its name.
        """
        if self.store.get(job_id)["status"] in REQUEUEABLE:
            # The gate remembers how the job ended: forget it, or the new message is
            # acknowledged as a duplicate of a finished job.
            try:
                gate.forget(str(job_id))
            except redis.RedisError as exc:
                raise GateUnavailable("requeue", job_id, mask_url(gate.url), exc) from exc
        job = self.store.transition(
            job_id,
            set(REQUEUEABLE),
            JobStatus.QUEUED,
            "requeued",
            "requeued by request",
            deliveries=0,
            finished_at=None,
        )
        payload = job["payload"] or {}
        self._publish(
            job["id"],
            job["handler"],
            list(payload.get("args", [])),
            dict(payload.get("kwargs", {})),
            job["queue"],
        )
        return uuid.UUID(str(job["id"]))
