"""At-least-once delivery through a killed pool child; a warm shutdown that loses nothing."""

from __future__ import annotations

import os
import signal

import pytest

from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance


def test_task_of_a_killed_pool_child_runs_again_and_completes(
    broker: Broker, effects: Effects
) -> None:
    with Worker(broker.url, queues="default", concurrency=1):
        result = probe_tasks.record.delay("killed", sleep_s=3)
        started = wait_for(lambda: effects.rows("killed", "start"), 20, "the task to start")
        os.kill(started[0][2], signal.SIGKILL)  # the pool child running it
        wait_for(lambda: effects.count("killed", "done") == 1, 60, "the task to run again")
        assert result.get(timeout=10) == "killed"
    assert effects.count("killed", "start") == 2, "killed once, run again once"


def test_sigterm_lets_ten_running_tasks_finish_and_none_runs_twice(
    broker: Broker, effects: Effects
) -> None:
    worker = Worker(broker.url, queues="default", concurrency=10).start()
    try:
        keys = [f"term{index:02d}" for index in range(10)]
        for key in keys:
            probe_tasks.record.delay(key, sleep_s=4)
        wait_for(lambda: len(effects.rows("term", "start")) == 10, 30, "ten running tasks")
        assert worker.terminate(60) == 0
        assert sorted(row[0] for row in effects.rows("term", "done")) == keys
    finally:
        worker.kill()
    # Whatever a new worker finds would run before the sentinel: nothing must be left.
    with Worker(broker.url, queues="default", concurrency=2):
        probe_tasks.record.delay("sentinel")
        wait_for(lambda: effects.count("sentinel", "done") == 1, 30, "the sentinel")
    assert sorted(row[0] for row in effects.rows("term", "start")) == keys, "a task ran twice"
