"""Time limits on real workers: the soft limit lets a task clean up, the hard one kills it.

``probe.overrun`` has ``soft_time_limit=1, time_limit=2`` and sleeps 10 s. Conveyor's
policy (app/jobs/task.py): a ``TransientError`` is retried; any other error, a hard
time limit among them, ends the job ``dead``, with no retry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.errors import JobNotFound
from app.jobs.service import JobService
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker, use_broker

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def limits_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each broker in turn, for every test of this module."""
    yield from use_broker(request.param)


@pytest.fixture(scope="module")
def worker(limits_broker: Broker) -> Iterator[Worker]:
    """One worker per broker, shared by the module's tests."""
    with Worker(limits_broker.url, queues="default", concurrency=2) as running:
        yield running


def phases(effects: Effects, key: str) -> list[tuple[str, int]]:
    """(phase, retries) of each effect row of ``key``, oldest first."""
    return [(row[1], row[3]) for row in effects.rows(key) if row[0] == key]


def finished(service: JobService, job_id: str) -> dict[str, Any]:
    """The job once the ledger shows it finished."""

    def done() -> dict[str, Any] | None:
        try:
            job = service.get(job_id)
        except JobNotFound:  # its first transition is still in the producer's batch
            return None
        return job if job["status"] in ("completed", "failed", "dead") else None

    return wait_for(done, 30, f"job {job_id} to finish in the ledger")


def test_a_task_over_its_soft_time_limit_cleans_up_and_is_dead_without_retry(
    worker: Worker, effects: Effects
) -> None:
    service = JobService()
    result = probe_tasks.overrun.delay("soft", on_soft="cleanup")
    job = finished(service, result.id)
    time.sleep(2)  # room for a retry that must not come
    assert phases(effects, "soft") == [("start", 0), ("cleanup", 0)]
    assert job["status"] == "dead"
    assert (job["last_error"] or "").startswith("SoftTimeLimitExceeded"), job["last_error"]
    assert service.history(result.id)[-1]["to_status"] == "dead"


def test_a_soft_time_limit_raised_as_transient_error_is_retried(
    worker: Worker, effects: Effects
) -> None:
    service = JobService()
    result = probe_tasks.overrun.delay("retried", on_soft="retry")
    assert result.get(timeout=30) == "retried"
    assert phases(effects, "retried") == [("start", 0), ("cleanup", 0), ("start", 1), ("done", 1)]
    job = finished(service, result.id)
    assert (job["status"], job["attempts"]) == ("completed", 2)
    retrying = [e for e in service.history(result.id) if e["to_status"] == "retrying"]
    assert [e["detail"] for e in retrying] == ["TransientError: retried: over the soft time limit"]


def test_a_task_over_its_hard_time_limit_is_killed_recorded_dead_and_not_retried(
    worker: Worker, effects: Effects
) -> None:
    service = JobService()
    children = set(worker.pool_pids())
    result = probe_tasks.overrun.delay("hard", on_soft="ignore")
    job = finished(service, result.id)
    assert job["status"] == "dead"
    # Celery's TimeLimitExceeded(2,): the hard limit, not the soft one, and its seconds.
    assert job["last_error"] == "TimeLimitExceeded: TimeLimitExceeded(2,)", job["last_error"]
    last = service.history(result.id)[-1]
    assert (last["to_status"], last["detail"]) == ("dead", job["last_error"])
    assert job["finished_at"] is not None
    # Killed: no cleanup, no done; and neither retried nor redelivered a while later.
    time.sleep(4)
    assert phases(effects, "hard") == [("start", 0), ("soft", 0)]
    assert service.get(result.id)["status"] == "dead"
    assert f"Hard time limit (2s) exceeded for probe.overrun[{result.id}]" in worker.output()
    # The pool child was replaced, and the worker goes on with the next job.
    assert set(worker.pool_pids()) != children
    after = probe_tasks.record.delay("after-hard")
    assert after.get(timeout=30) == "after-hard"
    assert effects.count("after-hard", "done") == 1
