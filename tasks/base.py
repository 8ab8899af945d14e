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

from app import deadletter
from app.errors import TransientError
from config.settings import get_settings

logger = logging.getLogger(__name__)

_worker = get_settings().worker


class ConveyorTask(Task):  # type: ignore[misc]
    """A task with Conveyor's retry policy and dead-lettering."""

    autoretry_for = (TransientError,)
    max_retries = _worker.max_retries
    retry_backoff = _worker.retry_backoff_s
    retry_backoff_max = _worker.retry_backoff_max_s
    retry_jitter = True

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Dead-letter the job; a failure to do so is logged, never raised into the worker."""
        request = self.request
        delivery = getattr(request, "delivery_info", None) or {}
        letter = {
            "task": self.name,
            "task_id": task_id,
            "args": list(args or []),
            "kwargs": dict(kwargs or {}),
            "queue": delivery.get("routing_key") or self._routed_queue(),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": str(einfo.traceback) if einfo is not None else None,
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
