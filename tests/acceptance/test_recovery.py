"""Jobs a dead worker left running come back within the recovery bound and complete once."""

from __future__ import annotations

import time

import pytest

from app.jobs.service import JobService
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.conftest import Broker

pytestmark = pytest.mark.acceptance

FAST_RECOVERY = {
    "CONVEYOR_LEDGER__HEARTBEAT_INTERVAL_S": "1",
    "CONVEYOR_LEDGER__RECOVERY_AFTER_S": "5",
}


def test_jobs_of_a_killed_worker_are_recovered_and_complete_once(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    doomed = Worker(broker.url, queues="default", concurrency=3, env=FAST_RECOVERY).start()
    keys = [f"lost{index}" for index in range(3)]
    jobs = {key: service.enqueue("probe.record", {"key": key, "sleep_s": 3}) for key in keys}
    wait_for(lambda: len(effects.rows("lost", "start")) == 3, 30, "three running jobs")
    wait_for(
        lambda: all(service.get(job)["status"] == "running" for job in jobs.values()),
        10,
        "the ledger to show them running",
    )
    doomed.kill()  # the whole worker: SIGKILL to main process and pool at once
    killed_at = time.monotonic()
    with Worker(broker.url, queues="default", concurrency=3, env=FAST_RECOVERY):
        wait_for(
            lambda: all(service.get(job)["status"] == "completed" for job in jobs.values()),
            60,
            "every lost job to complete",
        )
        recovered_in = time.monotonic() - killed_at
        time.sleep(2)  # room for a duplicate run to show itself
    assert all(effects.count(key, "done") == 1 for key in keys), effects.rows("lost")
    assert service.list(status="running")[0] == [], "no job is left running"
    assert recovered_in < 5 + 3 + 15, f"took {recovered_in:.1f}s"
    details = [event["detail"] or "" for event in service.history(jobs["lost0"])]
    if broker.is_redis:  # RabbitMQ may hand the message back on its own first
        assert any("stopped heartbeating" in detail for detail in details), details
