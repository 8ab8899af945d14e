"""ConveyorTask: the base of every Conveyor task.

Retry policy (Celery's own ``autoretry_for``/``retry_backoff``/``retry_jitter``):

* :class:`~app.errors.TransientError` is retried up to ``max_retries`` times, waiting
  a random time in ``[0, min(backoff_max, backoff × 2ⁿ)]`` before retry *n* (full jitter).
* :class:`~app.errors.PermanentError`, any unexpected error, a hard time limit, and a
  ``TransientError`` after the last retry go to the dead-letter queue with the task
  name, arguments, error and traceback; :func:`app.deadletter.requeue` sends them back.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Ignore, Reject
from pydantic import BaseModel

from app import deadletter
from app.errors import TransientError
from app.jobs import lifecycle
from app.jobs.claim import Claim, Verdict, claims
from app.jobs.lifecycle import RECORDED_HEADER, SENT_HEADER
from app.jobs.models import JobStatus
from app.jobs.recorder import Transition
from config.settings import get_settings

logger = logging.getLogger(__name__)

_worker = get_settings().worker

#: A delivery of a task without a hard time limit holds its job this long, seconds.
LEASE_WITHOUT_LIMIT_S = 3600.0


class ConveyorTask(Task):  # type: ignore[misc]
    """A task with Conveyor's retry policy and dead-lettering."""

    #: The pydantic model ``JobService.enqueue`` validates a payload against (None: any).
    payload_model: type[BaseModel] | None = None

    autoretry_for = (TransientError,)
    max_retries = _worker.max_retries
    retry_backoff = _worker.retry_backoff_s
    retry_backoff_max = _worker.retry_backoff_max_s
    retry_jitter = True
    #: Failures end in the dead-letter queue (the ledger records them as ``dead``).
    dead_letters = True
    #: Each delivery is claimed in the ledger before it runs (see app/jobs/claim.py).
    claims_deliveries = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run one delivery if the ledger's claim allows it; acknowledge it otherwise."""
        request = self.request
        if request.called_directly:
            return self.run(*args, **kwargs)
        attempt = int(request.retries or 0) + 1
        payload = {"args": list(args), "kwargs": dict(kwargs)}
        delivery = request.delivery_info or {}
        sent = getattr(request, SENT_HEADER, None)
        claim = claims.claim(
            request.id,
            self.name,
            delivery.get("routing_key"),
            payload,
            attempt,
            node=request.hostname,
            lease_s=self._lease_s(),
            sent_at=float(sent) if isinstance(sent, int | float) else None,
            redelivered=bool(delivery.get("redelivered")),
        )
        if claim.verdict is not Verdict.RUN:
            self._refuse(claim, attempt, args, kwargs)
            claims.release(request.id)  # a no-op unless the gate failed to take it
            raise Ignore()
        lifecycle.record_running(self, request.id, args, kwargs, claim.deliveries or None)
        return super().__call__(*args, **kwargs)

    def _lease_s(self) -> float:
        """How long a delivery may hold its job: the hard time limit, and a minute."""
        hard = (self.request.timelimit or (None, None))[0]
        hard = hard or self.time_limit or self.app.conf.task_time_limit or LEASE_WITHOUT_LIMIT_S
        return float(hard) + 60.0

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Let go of the job before its next attempt is published, which may start at once."""
        claims.release(self.request.id)
        return super().retry(*args, **kwargs)

    def after_return(self, *args: Any, **kwargs: Any) -> None:
        """Let go of the job, its outcome durable first (before the acknowledgement).

        A final outcome already left for the gate (``lifecycle.settle``); otherwise (a
        claim made in PostgreSQL, a gate that failed) the transitions are written
        now. Either way a second delivery that claims the job after the release sees
        it finished, and acknowledges instead of running it again.
        """
        claims.finish(self.request.id, lifecycle.recorder())

    def _refuse(self, claim: Claim, attempt: int, args: Any, kwargs: Any) -> None:
        """Record why a delivery did not run; dead-letter a job over its delivery cap.

        A duplicate of a job another delivery holds is published again for later,
        then acknowledged: should the holder be gone, the job still runs.
        """
        request = self.request
        verdict, status, deliveries = claim.verdict, claim.status, claim.deliveries
        if verdict is Verdict.OVER_CAP:
            reason = (
                f"delivered {deliveries} times for attempt {attempt}: over the cap of "
                f"{get_settings().ledger.max_redeliveries} redeliveries (does it kill its worker?)"
            )
            self._dead_letter(request.id, args, kwargs, f"DeliveryCapExceeded: {reason}", None)
            to_status, detail = JobStatus.DEAD, reason
        elif verdict is Verdict.BUSY:
            try:
                self.signature_from_request(
                    request,
                    args,
                    kwargs,
                    countdown=claim.retry_after_s,
                    headers={RECORDED_HEADER: True},
                ).apply_async()
            except Exception as exc:  # the broker keeps this copy instead
                logger.warning("%s[%s]: duplicate not republished: %s", self.name, request.id, exc)
                reason = f"duplicate of a held job, not republished: {exc}"
                raise Reject(reason, requeue=True) from exc
            to_status = JobStatus.RUNNING
            detail = (
                "duplicate delivery while another holds the job: acknowledged, "
                f"delivered again in {claim.retry_after_s:.0f} s"
            )
        else:
            to_status, detail = str(status), "redelivered after it finished: acknowledged, not run"
        logger.warning("%s[%s] not run: %s", self.name, request.id, detail)
        transition = Transition(
            job_id=request.id,
            to_status=to_status,
            from_status=status,
            attempt=attempt,
            worker=request.hostname,
            detail=detail,
            job={"last_error": detail} if verdict is Verdict.OVER_CAP else {},
        )
        if verdict is Verdict.OVER_CAP:
            lifecycle.settle(transition)  # still held: the gate records it dead
        else:
            lifecycle.recorder().record(transition)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Dead-letter the job; a failure to do so is logged, never raised into the worker."""
        traceback = str(einfo.traceback) if einfo is not None else None
        self._dead_letter(task_id, args, kwargs, f"{type(exc).__name__}: {exc}", traceback)

    def _dead_letter(
        self, task_id: str, args: Any, kwargs: Any, error: str, traceback: str | None
    ) -> None:
        request = self.request
        delivery = getattr(request, "delivery_info", None) or {}
        letter = {
            "task": self.name,
            "task_id": task_id,
            "args": list(args or []),
            "kwargs": dict(kwargs or {}),
            "queue": delivery.get("routing_key") or self._routed_queue(),
            "error": error,
            "traceback": traceback,
            "retries": getattr(request, "retries", 0) or 0,
        }
        try:
            deadletter.publish(self.app, letter)
            logger.warning("dead-lettered %s[%s]: %s", self.name, task_id, letter["error"])
        except Exception:
            logger.exception("could not dead-letter %s[%s]", self.name, task_id)

    def _routed_queue(self) -> str:
        """The queue the router sends this task to (a hard timeout has no delivery info)."""
        route = self.app.amqp.router.route({}, self.name)
        return str(route["queue"].name)
