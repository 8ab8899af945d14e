"""Celery's result backend on the job ledger: results are written in batches with the
job's transitions, and read from ``jobs``.

Celery's own database backend writes every result (and STARTED) synchronously on
the worker's hot path; here the lifecycle hooks already record each state with
its result, so storing is free and reading maps a ledger row to Celery's meta.
``AsyncResult.get()`` polls, as with any database backend.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from celery import group, states
from celery.backends.base import BaseBackend

from app.errors import JobNotFound
from app.jobs.claim import claims
from app.jobs.lifecycle import recorder
from app.jobs.models import JobStatus
from app.jobs.recorder import Transition
from app.jobs.store import JobStore

logger = logging.getLogger(__name__)

#: Ledger status → Celery state.
STATES = {
    JobStatus.SCHEDULED: states.PENDING,
    JobStatus.QUEUED: states.PENDING,
    JobStatus.RUNNING: states.STARTED,
    JobStatus.RETRYING: states.RETRY,
    JobStatus.COMPLETED: states.SUCCESS,
    JobStatus.FAILED: states.FAILURE,
    JobStatus.DEAD: states.FAILURE,
    JobStatus.CANCELLED: states.REVOKED,
}


class LedgerBackend(BaseBackend):
    """Results in the ledger (``result_backend = "app.jobs.backend:LedgerBackend"``)."""

    persistent = True
    supports_autoexpire = False
    supports_native_join = False

    def __init__(self, app: Any = None, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.url = url

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        # The delivery hooks (app.jobs.delivery) record this state, batched.
        return result

    def chord_error_from_stack(self, callback: Any, exc: Any = None) -> Any:
        """Fail a chord's callback that will never run, in the ledger too.

        ``chord_unlock`` calls this when a member failed. Celery stores that failure
        with :meth:`_store_result`, which leaves states to the delivery hooks; but no
        hook sees a callback that is never published, so its result would stay
        PENDING for ever. The failure is recorded here as ``failed``.
        """
        exc = exc if exc is not None else sys.exc_info()[1]
        exception_info = super().chord_error_from_stack(callback, exc)
        bodies = list(callback.tasks) if isinstance(callback, group) else [callback]
        for body in bodies:
            try:
                self._record_chord_error(body, exc)
            except Exception:  # like a delivery hook: logged, never raised into chord_unlock
                logger.exception("could not record the chord error of %s", body)
        return exception_info

    def _record_chord_error(self, body: Any, exc: Any) -> None:
        job_id = body.options.get("task_id") or body.id
        if not job_id:
            return
        error = f"{type(exc).__name__}: {exc}"
        router = self.app.amqp.router  # type: ignore[attr-defined]
        queue = body.options.get("queue") or router.route({}, body.task)["queue"]
        now = datetime.now(UTC)
        transition = Transition(
            job_id=str(job_id),
            to_status=JobStatus.FAILED,
            at=now,
            detail=f"chord failed, callback not run: {error}",
            job={
                "handler": body.task,
                "queue": getattr(queue, "name", queue),
                "payload": {"args": list(body.args), "kwargs": dict(body.kwargs)},
                "last_error": error,
                "finished_at": now,
            },
        )
        claims.settle(transition)  # the gate first: a late delivery of it finds it finished
        recorder().record(transition)

    def _forget(self, task_id: str) -> None:
        """Results are kept with their job until retention removes both."""

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        try:
            row = JobStore().get(task_id)
        except JobNotFound:  # not recorded yet (or not a job id at all)
            return {"status": states.PENDING, "result": None, "task_id": task_id}
        status = STATES.get(row["status"], states.PENDING)
        result: Any = row["result"]
        if status in states.EXCEPTION_STATES:
            kind, _, message = (row["last_error"] or f"{row['status']}: ").partition(": ")
            # exc_module None: Celery rebuilds a plain exception class of that name and
            # never imports anything named by stored data (CVE-2021-23727).
            result = self.exception_to_python(
                {"exc_type": kind or "JobFailed", "exc_message": message, "exc_module": None}
            )
        payload = row["payload"] or {}
        finished_at = row["finished_at"]
        return {
            "task_id": task_id,
            "status": status,
            "result": result,
            "traceback": row["traceback"],
            "children": [],
            "date_done": finished_at.isoformat() if isinstance(finished_at, datetime) else None,
            "name": row["handler"],
            "args": payload.get("args"),
            "kwargs": payload.get("kwargs"),
            "worker": row["worker"],
            "retries": max(0, (row["attempts"] or 1) - 1),
            "queue": row["queue"],
        }

    def cleanup(self) -> None:
        """Retention is the ledger's (maintenance.purge_finished_jobs)."""
