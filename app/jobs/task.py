"""ConveyorTask: the class of every task of the Conveyor app (its ``task_cls``).

A plain ``@app.task`` or ``@shared_task`` is a ConveyorTask, so every job gets
the ledger, the claim, the delivery cap, the retry policy and dead-lettering
without opting in; a task opts out of one guarantee by name (``claims_deliveries
= False``, ``dead_letters = False``). Each hook is one call into
:mod:`app.jobs.delivery`, whose docstring gives the order Celery calls them in.

Retry policy (Celery's own ``autoretry_for``/``retry_backoff``/``retry_jitter``):

* :class:`~app.errors.TransientError` is retried up to ``max_retries`` times, waiting
  a random time in ``[0, min(backoff_max, backoff × 2ⁿ)]`` before retry *n* (full jitter).
* :class:`~app.errors.PermanentError`, any unexpected error, a hard time limit, and a
  ``TransientError`` after the last retry end the job as ``dead``: the ledger's
  dead-letter queue, from which an operator requeues or purges it.

``max_retries``, ``retry_backoff`` and ``retry_backoff_max`` come from the settings
(``CONVEYOR_WORKER__MAX_RETRIES`` …) when the app binds its tasks, unless a task
sets its own.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task
from pydantic import BaseModel

from app.errors import TransientError
from app.jobs.delivery import deliveries
from app.jobs.lifecycle import recorder
from app.jobs.store import JobStore

#: Seconds between two progress writes of one job (the last, 100 %, is never skipped).
PROGRESS_EVERY_S = 1.0

#: Task attribute → the app setting it comes from when the task sets none itself.
RETRY_SETTINGS = {
    "max_retries": "conveyor_task_max_retries",
    "retry_backoff": "conveyor_task_retry_backoff_s",
    "retry_backoff_max": "conveyor_task_retry_backoff_max_s",
}


class ConveyorTask(Task[Any, Any]):
    """A task with Conveyor's delivery guarantees, retry policy and dead-lettering."""

    #: The pydantic model ``JobService.enqueue`` validates a payload against (None: any).
    payload_model: type[BaseModel] | None = None

    autoretry_for = (TransientError,)
    retry_jitter = True
    #: A job that fails for good is ``dead`` (requeue or purge it), not ``failed``.
    dead_letters = True
    #: Each delivery is claimed at the delivery gate before it runs (app/jobs/claim.py).
    claims_deliveries = True

    @classmethod
    def bind(cls, app: Any) -> Any:
        """Bind to ``app``, taking the retry policy from its settings unless the task
        sets its own (``max_retries=None``, as ``celery.chord_unlock`` declares, is one)."""
        own = cls.__mro__[: cls.__mro__.index(ConveyorTask)]
        for attribute, setting in RETRY_SETTINGS.items():
            if not any(attribute in vars(klass) for klass in own):
                setattr(cls, attribute, app.conf[setting])
        return super().bind(app)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run this delivery if its claim allows (``Ignore`` acknowledges it otherwise)."""
        if self.request.called_directly:
            return self.run(*args, **kwargs)
        deliveries.begin(self, args, kwargs)
        return super().__call__(*args, **kwargs)

    def progress(self, percent: float, message: str | None = None) -> bool:
        """Say how far this job is (0-100) and what it does; the API and the console show
        it while the job runs. Writes at most once a second (100 % always): call it as
        often as is convenient. True if it was written now."""
        if not 0 <= percent <= 100:
            raise ValueError(f"progress is a percentage from 0 to 100, not {percent!r}")
        request = self.request
        if request.called_directly or not request.id:
            return False
        now = time.monotonic()
        last = getattr(request, "_conveyor_progress_at", None)
        if percent < 100 and last is not None and now - last < PROGRESS_EVERY_S:
            return False
        request._conveyor_progress_at = now  # type: ignore[attr-defined]
        # The job's ``running`` record goes first: the progress is kept on a running row.
        recorder().flush()
        return JobStore().progress(request.id, round(percent), message)

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Let go of the job before its next attempt is published."""
        deliveries.retrying(self)
        return super().retry(*args, **kwargs)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Settle ``completed`` before the acknowledgement."""
        deliveries.succeeded(self, retval)

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Record ``retrying``."""
        deliveries.retried(self, exc, task_id)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Settle ``dead`` (or ``failed``) before the acknowledgement."""
        deliveries.failed(self, exc, task_id, einfo)

    def after_return(self, status: str, retval: Any, task_id: str, *args: Any) -> None:
        """Let go of the job."""
        deliveries.ended(task_id)
