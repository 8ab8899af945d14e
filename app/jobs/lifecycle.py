"""Celery signals → ledger transitions, for every job that passes through Conveyor.

Connected once per process by :func:`connect`. Each handler only builds a
:class:`~app.jobs.recorder.Transition` and buffers it; a failing handler logs and
returns, it never breaks the job it describes.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from celery import signals

from app.jobs.claim import claims
from app.jobs.gate import gate
from app.jobs.models import JobStatus
from app.jobs.recorder import Recorder, Transition
from config.settings import get_settings

logger = logging.getLogger(__name__)

_recorder: Recorder | None = None

#: Header of a message whose job the ledger already holds (JobService writes it first).
RECORDED_HEADER = "conveyor_recorded"
#: Header with the time (epoch seconds) a Conveyor producer published the message.
SENT_HEADER = "conveyor_sent"

#: When the current publish by a Conveyor app began (None outside one). Celery's signals
#: are process-wide, and another Celery app in the same process (a benchmark's bare one)
#: must not be recorded; the start time stamps ``queued`` before any worker can start it.
publishing_conveyor: ContextVar[datetime | None] = ContextVar("publishing_conveyor", default=None)


def ours(task: Any) -> bool:
    """True for a task of a Conveyor app."""
    return bool(getattr(getattr(task, "app", None), "conveyor_ledger", False))


def recorder() -> Recorder:
    """This process's recorder, created on first use."""
    global _recorder
    if _recorder is None:
        ledger = get_settings().ledger
        _recorder = Recorder(
            get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1),
            flush_interval_s=ledger.flush_interval_s,
            batch_size=ledger.batch_size,
            max_buffer=ledger.max_buffer,
        )
        _recorder.on_written = gate.flushed
    return _recorder


def _never_raises(handler: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            logger.exception("ledger hook %s failed; the job goes on", handler.__name__)

    return guarded


def _worker(request: Any) -> str:
    return str(getattr(request, "hostname", None) or socket.gethostname())


def _queue(request: Any) -> str | None:
    info = getattr(request, "delivery_info", None) or {}
    return info.get("routing_key")


@_never_raises
def on_publish(
    sender: str | None = None,
    body: Any = None,
    routing_key: str | None = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """A job reached the broker: ``queued`` (a retry's republish is ``task_retry``'s).

    Connected to ``after_task_publish``: a publish refused before it left (a
    non-JSON argument, a dead broker) records nothing.
    """
    headers = headers or {}
    started = publishing_conveyor.get()
    if (
        started is None
        or not headers.get("id")
        or headers.get("retries")
        or headers.get(RECORDED_HEADER)
    ):
        return
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, list | tuple) and len(body) >= 2 else ([], {})
    )
    now = started  # before the message left: no worker can have started it earlier
    eta = headers.get("eta")
    status = JobStatus.SCHEDULED if eta else JobStatus.QUEUED
    recorder().record(
        Transition(
            job_id=headers["id"],
            to_status=status,
            at=now,
            job={
                "handler": headers.get("task") or sender,
                "queue": routing_key,
                "payload": {"args": list(args), "kwargs": dict(kwargs)},
                "enqueued_at": now,
                "due_at": datetime.fromisoformat(eta) if eta else None,
            },
        )
    )


@_never_raises
def on_prerun(
    task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    """A worker starts an attempt: ``running`` (ConveyorTask records it after its claim)."""
    if getattr(task, "claims_deliveries", False) or not ours(task):
        return
    record_running(task, task_id, args, kwargs)


def record_running(
    task: Any, task_id: Any, args: Any, kwargs: Any, deliveries: int | None = None
) -> None:
    """Buffer the ``running`` transition of ``task``'s current attempt."""
    request = task.request
    retries = int(getattr(request, "retries", 0) or 0)
    now = datetime.now(UTC)
    recorder().record(
        Transition(
            job_id=str(task_id),
            to_status=JobStatus.RUNNING,
            from_status=JobStatus.RETRYING if retries else JobStatus.QUEUED,
            at=now,
            attempt=retries + 1,
            worker=_worker(request),
            job={
                "handler": task.name,
                "queue": _queue(request),
                "payload": {"args": list(args or []), "kwargs": dict(kwargs or {})},
                "started_at": now,
                "deliveries": deliveries,
            },
        )
    )


def settle(transition: Transition) -> None:
    """Buffer the transition that ends an attempt, its outcome in the gate first."""
    claims.settle(transition)
    recorder().record(transition)


@_never_raises
def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    """An attempt failed and another is scheduled: ``retrying``."""
    if not ours(sender):
        return
    retries = int(getattr(request, "retries", 0) or 0)
    error = getattr(reason, "exc", None) or reason
    recorder().record(
        Transition(
            job_id=str(request.id),
            to_status=JobStatus.RETRYING,
            from_status=JobStatus.RUNNING,
            attempt=retries + 1,
            worker=_worker(request),
            detail=f"{type(error).__name__}: {error}",
            job={"last_error": f"{type(error).__name__}: {error}"},
        )
    )


@_never_raises
def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    """The attempt returned: ``completed``, with the result."""
    if not ours(sender):
        return
    request = sender.request
    settle(
        Transition(
            job_id=str(request.id),
            to_status=JobStatus.COMPLETED,
            from_status=JobStatus.RUNNING,
            attempt=int(request.retries or 0) + 1,
            worker=_worker(request),
            job={"result": result, "finished_at": datetime.now(UTC)},
        )
    )


@_never_raises
def on_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """The job failed for good: ``dead`` when dead-lettered, else ``failed``."""
    if not ours(sender):
        return
    request = sender.request
    status = JobStatus.DEAD if getattr(sender, "dead_letters", False) else JobStatus.FAILED
    error = f"{type(exception).__name__}: {exception}"
    settle(
        Transition(
            job_id=str(task_id),
            to_status=status,
            from_status=JobStatus.RUNNING,
            attempt=int(getattr(request, "retries", 0) or 0) + 1,
            worker=_worker(request),
            detail=error,
            job={
                "last_error": error,
                "finished_at": datetime.now(UTC),
                "traceback": str(einfo.traceback) if einfo is not None else None,
            },
        )
    )


@_never_raises
def on_revoked(sender: Any = None, request: Any = None, terminated: bool = False, **_: Any) -> None:
    """The job was revoked: ``cancelled``."""
    if not ours(sender):
        return
    recorder().record(
        Transition(
            job_id=str(request.id),
            to_status=JobStatus.CANCELLED,
            detail="terminated while running" if terminated else "revoked",
            job={"finished_at": datetime.now(UTC)},
        )
    )


def _shutdown(**_: Any) -> None:
    if _recorder is not None:
        _recorder.close()


def connect() -> None:
    """Connect the handlers (idempotent: Celery keeps one connection per receiver)."""
    signals.after_task_publish.connect(on_publish, weak=False, dispatch_uid="conveyor.publish")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="conveyor.prerun")
    signals.task_retry.connect(on_retry, weak=False, dispatch_uid="conveyor.retry")
    signals.task_success.connect(on_success, weak=False, dispatch_uid="conveyor.success")
    signals.task_failure.connect(on_failure, weak=False, dispatch_uid="conveyor.failure")
    signals.task_revoked.connect(on_revoked, weak=False, dispatch_uid="conveyor.revoked")
    # Pool children leave through os._exit, so atexit never runs there: flush first.
    signals.worker_process_shutdown.connect(_shutdown, weak=False, dispatch_uid="conveyor.child")
    signals.worker_shutdown.connect(_shutdown, weak=False, dispatch_uid="conveyor.main")
