"""A retrying attempt ends before its next attempt is published.

``on_retry`` runs after ``Task.retry`` has published the next attempt, which another
pool process may start and even finish at once. The ``retrying`` it records carries
the time the attempt ended (``Deliveries.retrying``, before the publish), so that the
ledger, which keeps the latest transition of a job, ends with the next attempt's
outcome and not with the retry.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from celery.exceptions import Retry

from app.jobs.delivery import Deliveries, retry_reason
from app.jobs.models import JobStatus
from app.jobs.recorder import Transition, fold


class Released:
    """Claims that only note when a job was let go of."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def release(self, job_id: str) -> None:
        self.at = datetime.now(UTC)


class Kept:
    """A recorder that keeps what it is given."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def record(self, transition: Transition) -> None:
        self.transitions.append(transition)


def task(retries: int) -> Any:
    request = SimpleNamespace(id="job-1", retries=retries, hostname="w1@host")
    return SimpleNamespace(request=request, name="demo.flaky")


def test_a_retry_recorded_after_the_next_attempt_finished_does_not_reopen_the_job() -> None:
    claims, kept = Released(), Kept()
    deliveries = Deliveries(claims, lambda: kept)  # type: ignore[arg-type]
    first = task(retries=0)
    deliveries.retrying(first)  # Task.retry: let go, then publish the next attempt
    assert claims.at is not None
    time.sleep(0.01)
    # The next attempt runs and completes on another pool process meanwhile ...
    kept.record(Transition("job-1", JobStatus.RUNNING, attempt=2))
    kept.record(Transition("job-1", JobStatus.COMPLETED, attempt=2))
    time.sleep(0.01)
    # ... before the first one's on_retry records its end.
    deliveries.retried(first, RuntimeError("HTTP 500"))
    retry = kept.transitions[-1]
    assert retry.to_status == JobStatus.RETRYING
    assert retry.at <= claims.at, "stamped when the attempt ended, before the publish"
    (row,) = fold(kept.transitions)
    assert row["status"] == JobStatus.COMPLETED
    assert row["attempts"] == 2


def test_a_delivery_cancelled_on_connection_loss_is_recorded_for_its_job_with_why() -> None:
    claims, kept = Released(), Kept()
    deliveries = Deliveries(claims, lambda: kept)  # type: ignore[arg-type]
    # The worker's main process: its task.request is no delivery's.
    main = SimpleNamespace(request=SimpleNamespace(id=None, retries=None, hostname=None))
    deliveries.retried(main, Retry(message="cancelled by Celery"), "job-7")
    (cancelled,) = kept.transitions
    assert cancelled.job_id == "job-7"
    assert cancelled.to_status == JobStatus.RETRYING
    assert cancelled.detail == (
        "cancelled by Celery: the worker lost its broker connection while this attempt ran; "
        "the message is delivered again"
    )
    # Attempt 0: the ledger does not let it reopen a job whose attempt finished meanwhile
    # (the pool process's own batch; tests/integration/test_gate.py, late news).
    assert cancelled.attempt == 0


def test_a_retry_without_an_error_says_so() -> None:
    assert retry_reason(None) == "retry requested without an error"
    assert retry_reason(Retry(exc=TimeoutError("partner API"))) == "TimeoutError: partner API"
    assert retry_reason(RuntimeError("HTTP 500")) == "RuntimeError: HTTP 500"
