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

from app.jobs.delivery import Deliveries
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
