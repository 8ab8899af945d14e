"""One delivery of a job, from its claim to its acknowledgement.

:class:`ConveyorTask`'s hooks are one-line calls into :data:`deliveries`, which
owns every step: claim, run, settle the outcome, release, and what a refused
delivery becomes. Celery calls the hooks of one delivery in this order
(``celery/app/trace.py``; ``tests/unit/test_hook_order.py`` pins it against the
installed Celery), in the pool process that runs it:

1. ``task.__call__`` → :meth:`Deliveries.begin`: the claim. A refused delivery
   is recorded, let go of, and ends in :class:`~celery.exceptions.Ignore`, after
   which Celery calls no further hook.
2. The task's body.
3. One outcome hook, after the result backend's own store call:

   * success: ``on_success`` → :meth:`Deliveries.succeeded`;
   * ``self.retry()`` (also Celery's ``autoretry_for``): ``Task.retry`` →
     :meth:`Deliveries.retrying` ends the attempt and lets go of the job *before*
     the next attempt is published, then ``on_retry`` → :meth:`Deliveries.retried`
     records it, stamped with that earlier time, and no step 4
     (``RETRY`` is one of Celery's ``IGNORE_STATES``);
   * failure: ``on_failure`` → :meth:`Deliveries.failed`.

4. ``after_return`` → :meth:`Deliveries.ended`: the job is let go of.
5. The pool process hands the result to the worker's main process, which
   acknowledges the message (``task_acks_late``).

So a final outcome is in the delivery gate (or, when the gate is away, in
PostgreSQL) at step 3 or 4, always before the acknowledgement at step 5: a
process that dies after the ack has lost nothing. A hard time limit kills the
pool process; the main process then calls ``on_failure`` and ``after_return``
itself (``Request.on_timeout``), with no claim of its own, and the outcome is
marked in the gate for any later duplicate.

Every hook here logs and returns on an unexpected error: bookkeeping never
breaks the job it describes (dramatiq's ``emit_after``).
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from celery.exceptions import Ignore, Reject, Retry

from app.jobs.claim import Claims, claims
from app.jobs.lifecycle import RECORDED_HEADER, SENT_HEADER, recorder
from app.jobs.models import JobStatus
from app.jobs.recorder import Recorder, Transition
from app.jobs.verdict import Claim, Verdict
from config.settings import get_settings

logger = logging.getLogger(__name__)

#: A delivery of a task without a hard time limit holds its job this long, seconds.
LEASE_WITHOUT_LIMIT_S = 3600.0
#: What Celery's ``Retry`` says of a delivery it cancelled on connection loss.
CANCELLED = "cancelled by Celery"
#: The request attribute that keeps when an attempt that retries ended.
RETRIED_AT = "_conveyor_retried_at"

F = TypeVar("F", bound=Callable[..., None])


def _never_raises(hook: F) -> F:
    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            logger.exception("delivery hook %s failed; the job goes on", hook.__name__)

    return guarded  # type: ignore[return-value]


def _worker(request: Any) -> str:
    return str(getattr(request, "hostname", None) or socket.gethostname())


def _attempt(request: Any) -> int:
    return int(getattr(request, "retries", 0) or 0) + 1


def retry_reason(exc: BaseException | None) -> str:
    """What ended an attempt that is retried, for the ledger: the error it was retried
    for, or what Celery said when it cancelled the attempt (never ``NoneType: None``)."""
    if isinstance(exc, Retry):
        if exc.exc is not None:
            return retry_reason(exc.exc)
        if str(exc.message) == CANCELLED:
            return (
                f"{CANCELLED}: the worker lost its broker connection while this attempt ran; "
                "the message is delivered again"
            )
        return f"retry requested: {exc.message or 'no reason given'}"
    if exc is None:
        return "retry requested without an error"
    return f"{type(exc).__name__}: {exc}"


class Deliveries:
    """The deliveries of one process: each claimed, settled and let go of here."""

    def __init__(self, claims: Claims, recorder: Callable[[], Recorder]) -> None:
        self.claims = claims
        self.recorder = recorder

    # -- 1. the claim --------------------------------------------------------

    def begin(self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        """Claim the current delivery of ``task``; raise ``Ignore`` unless it may run.

        Returns how many times this attempt has been delivered (1: the first time;
        0: the task does not claim its deliveries)."""
        request = task.request
        attempt = _attempt(request)
        payload = {"args": list(args), "kwargs": dict(kwargs)}
        delivery = request.delivery_info or {}
        if not getattr(task, "claims_deliveries", True):
            self._running(task, args, kwargs, None)
            return 0
        sent = getattr(request, SENT_HEADER, None)
        claim = self.claims.claim(
            request.id,
            task.name,
            delivery.get("routing_key"),
            payload,
            attempt,
            node=request.hostname,
            lease_s=self._lease_s(task),
            sent_at=float(sent) if isinstance(sent, int | float) else None,
            redelivered=bool(delivery.get("redelivered")),
        )
        if claim.verdict is Verdict.RUN:
            self._running(task, args, kwargs, claim.deliveries or None)
            return claim.deliveries or 1
        try:
            self._refuse(task, claim, attempt, args, kwargs)
        finally:
            self.claims.release(request.id)  # a no-op unless the gate failed to take it
        raise Ignore()

    @staticmethod
    def _lease_s(task: Any) -> float:
        """How long a delivery may hold its job: the hard time limit, and a minute."""
        hard = (task.request.timelimit or (None, None))[0]
        hard = hard or task.time_limit or task.app.conf.task_time_limit or LEASE_WITHOUT_LIMIT_S
        return float(hard) + 60.0

    def _running(self, task: Any, args: Any, kwargs: Any, deliveries: int | None) -> None:
        request = task.request
        retries = int(getattr(request, "retries", 0) or 0)
        now = datetime.now(UTC)
        info = getattr(request, "delivery_info", None) or {}
        self.recorder().record(
            Transition(
                job_id=str(request.id),
                to_status=JobStatus.RUNNING,
                from_status=JobStatus.RETRYING if retries else JobStatus.QUEUED,
                at=now,
                attempt=retries + 1,
                worker=_worker(request),
                job={
                    "handler": task.name,
                    "queue": info.get("routing_key"),
                    "payload": {"args": list(args or []), "kwargs": dict(kwargs or {})},
                    "started_at": now,
                    "deliveries": deliveries,
                },
            )
        )

    def _refuse(self, task: Any, claim: Claim, attempt: int, args: Any, kwargs: Any) -> None:
        """Record why a delivery did not run; a job over its delivery cap is dead.

        A duplicate of a job another delivery holds is published again for later,
        then acknowledged: should the holder be gone, the job still runs.
        """
        request = task.request
        verdict, status, deliveries = claim.verdict, claim.status, claim.deliveries
        if verdict is Verdict.OVER_CAP:
            reason = (
                f"delivered {deliveries} times for attempt {attempt}: over the cap of "
                f"{get_settings().ledger.max_redeliveries} redeliveries (does it kill its worker?)"
            )
            detail = f"DeliveryCapExceeded: {reason}"
            logger.warning("%s[%s] not run, dead: %s", task.name, request.id, reason)
            # Still held: the gate takes the outcome before the acknowledgement.
            self._settle(
                Transition(
                    job_id=request.id,
                    to_status=JobStatus.DEAD,
                    from_status=status,
                    attempt=attempt,
                    worker=request.hostname,
                    detail=detail,
                    job={"last_error": detail, "finished_at": datetime.now(UTC)},
                )
            )
            return
        if verdict is Verdict.BUSY:
            try:
                task.signature_from_request(
                    request,
                    args,
                    kwargs,
                    countdown=claim.retry_after_s,
                    headers={RECORDED_HEADER: True},
                ).apply_async()
            except Exception as exc:  # the broker keeps this copy instead
                logger.warning("%s[%s]: duplicate not republished: %s", task.name, request.id, exc)
                reason = f"duplicate of a held job, not republished: {exc}"
                raise Reject(reason, requeue=True) from exc
            to_status: str = JobStatus.RUNNING
            detail = (
                "duplicate delivery while another holds the job: acknowledged, "
                f"delivered again in {claim.retry_after_s:.0f} s"
            )
        else:
            to_status, detail = str(status), "redelivered after it finished: acknowledged, not run"
        logger.warning("%s[%s] not run: %s", task.name, request.id, detail)
        self.recorder().record(
            Transition(
                job_id=request.id,
                to_status=to_status,
                from_status=status,
                attempt=attempt,
                worker=request.hostname,
                detail=detail,
            )
        )

    # -- 3. the outcome ------------------------------------------------------

    def _settle(self, transition: Transition) -> None:
        """Buffer the transition that ends an attempt, its outcome in the gate first."""
        self.claims.settle(transition)
        self.recorder().record(transition)

    @_never_raises
    def succeeded(self, task: Any, result: Any) -> None:
        """The attempt returned: ``completed``, with the result."""
        request = task.request
        self._settle(
            Transition(
                job_id=str(request.id),
                to_status=JobStatus.COMPLETED,
                from_status=JobStatus.RUNNING,
                attempt=_attempt(request),
                worker=_worker(request),
                job={"result": result, "finished_at": datetime.now(UTC)},
            )
        )

    def retrying(self, task: Any) -> None:
        """Let go of the job before its next attempt is published, which may start at once.

        The attempt ends now, and its ``retrying`` carries this time: recorded by
        ``on_retry`` only after the publish, it would otherwise come later than the
        next attempt's ``running`` (or even its ``completed``) and reopen the job.
        """
        setattr(task.request, RETRIED_AT, datetime.now(UTC))
        self.claims.release(task.request.id)

    @_never_raises
    def retried(self, task: Any, exc: BaseException | None, task_id: str | None = None) -> None:
        """An attempt failed and another is scheduled: ``retrying``.

        Also called by the worker's main process when it cancels the deliveries that
        were running as its broker connection dropped (Celery's
        ``worker_cancel_long_running_tasks_on_connection_loss``): there ``task.request``
        is not that delivery's, ``task_id`` is, and the broker delivers it again.
        """
        request = task.request
        job_id = task_id or str(request.id)
        here = str(request.id) == job_id
        error = retry_reason(exc)
        self.recorder().record(
            Transition(
                job_id=job_id,
                to_status=JobStatus.RETRYING,
                from_status=JobStatus.RUNNING,
                at=(getattr(request, RETRIED_AT, None) if here else None) or datetime.now(UTC),
                attempt=_attempt(request) if here else 0,
                worker=_worker(request),
                detail=error,
                job={"last_error": error},
            )
        )

    @_never_raises
    def failed(self, task: Any, exc: BaseException, task_id: str, einfo: Any) -> None:
        """The job failed for good: ``dead`` (the ledger's dead-letter queue), or ``failed``
        for a task that opted out of dead-lettering.

        Also called by the worker's main process for a hard time limit, where
        ``task.request`` is not this delivery's: ``task_id`` is.
        """
        request = task.request
        status = JobStatus.DEAD if getattr(task, "dead_letters", True) else JobStatus.FAILED
        error = f"{type(exc).__name__}: {exc}"
        same = str(getattr(request, "id", None)) == str(task_id)
        self._settle(
            Transition(
                job_id=str(task_id),
                to_status=status,
                from_status=JobStatus.RUNNING,
                attempt=_attempt(request) if same else 0,
                worker=_worker(request),
                detail=error,
                job={
                    "last_error": error,
                    "finished_at": datetime.now(UTC),
                    "traceback": str(einfo.traceback) if einfo is not None else None,
                },
            )
        )
        logger.warning("%s[%s] is %s: %s", task.name, task_id, status, error)

    # -- 4. the release ------------------------------------------------------

    @_never_raises
    def ended(self, task_id: str) -> None:
        """Let go of the job, its outcome durable first (before the acknowledgement).

        A final outcome already left for the gate (:meth:`_settle`); otherwise (a
        claim made in PostgreSQL, a gate that failed) the transitions are written
        now. Either way a second delivery that claims the job after the release
        sees it finished, and acknowledges instead of running it again.
        """
        self.claims.finish(task_id, self.recorder())

    # -- outside a delivery ----------------------------------------------------

    @_never_raises
    def revoked(self, request: Any, terminated: bool) -> None:
        """The job was revoked before or while it ran: ``cancelled``."""
        self.recorder().record(
            Transition(
                job_id=str(request.id),
                to_status=JobStatus.CANCELLED,
                detail="terminated while running" if terminated else "revoked",
                job={"finished_at": datetime.now(UTC)},
            )
        )


#: This process's deliveries.
deliveries = Deliveries(claims, recorder)
