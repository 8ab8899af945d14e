"""Retries with backoff and jitter; dead jobs and their requeue."""

from __future__ import annotations

import pytest

from app.celery import app
from app.jobs.service import JobService
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.conftest import Broker

pytestmark = pytest.mark.acceptance

#: Time a retry may take beyond its countdown: publish, ETA wake-up, a database row.
SLACK_S = 1.0


def test_transient_failures_retry_with_growing_jittered_delays(
    broker: Broker, effects: Effects
) -> None:
    keys = [f"flaky{index}" for index in range(6)]
    with Worker(broker.url, queues="default", concurrency=6):
        results = [probe_tasks.flaky.delay(key, 2) for key in keys]
        assert [result.get(timeout=60) for result in results] == [3] * len(keys)
    first_gaps, second_gaps = [], []
    for key in keys:
        starts = [row for row in effects.rows(key, "start") if row[0] == key]
        assert [row[3] for row in starts] == [0, 1, 2], f"{key} did not run exactly 3 times"
        assert effects.count(key, "done") == 1
        first_gaps.append((starts[1][4] - starts[0][4]).total_seconds())
        second_gaps.append((starts[2][4] - starts[1][4]).total_seconds())
    # probe.flaky: retry_backoff=2, so retry n waits a random time in [0, 2 × 2ⁿ⁻¹] s.
    assert max(first_gaps) <= 2 + SLACK_S, first_gaps
    assert max(second_gaps) <= 4 + SLACK_S, second_gaps
    # Full jitter: twelve waits drawn from {0,1,2} and {0..4} seconds are not all alike.
    assert len({round(gap) for gap in first_gaps + second_gaps}) > 1, (first_gaps, second_gaps)


def test_job_failing_every_retry_is_dead_and_requeues_from_the_ledger(
    broker: Broker, effects: Effects
) -> None:
    effects.flag("broken", on=True)
    service = JobService(app)
    with Worker(broker.url, queues="default", concurrency=2):
        result = probe_tasks.broken.delay("broken")
        rejected = probe_tasks.rejects.delay("rejected")
        ours = {result.id, rejected.id}

        def dead() -> set[str]:
            return {str(job["id"]) for job in service.list(status="dead", limit=500)[0]} & ours

        wait_for(lambda: dead() == ours, 60, "two dead jobs")
        assert result.get(timeout=10, propagate=False) is not None
        assert result.state == "FAILURE"
        assert effects.count("broken") == 3, "1 attempt + max_retries=2"
        assert effects.count("rejected") == 1, "PermanentError is never retried"

        broken = service.get(result.id)
        assert broken["handler"] == "probe.broken"
        assert broken["payload"]["args"] == ["broken"]
        assert broken["queue"] == "default"
        assert broken["attempts"] == 3
        assert broken["last_error"] == "TransientError: broken is broken"
        assert "TransientError" in broken["traceback"]
        assert service.get(rejected.id)["last_error"] == (
            "PermanentError: rejected can never succeed"
        )

        effects.flag("broken", on=False)
        service.requeue(result.id)
        wait_for(lambda: effects.count("broken", "done") == 1, 30, "the requeued job to succeed")
        assert app.AsyncResult(result.id).get(timeout=10) == "broken"
        assert dead() == {rejected.id}, "the other dead job stays"
