"""Delayed jobs wait in PostgreSQL and run once, on time; transactional enqueue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from app.celery import app
from app.db import engine
from app.jobs.releaser import Releaser
from app.jobs.service import JobService
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.test_publish import depths
from tests.acceptance.workers import Worker
from tests.servers import Broker
from tests.services import ROOT

pytestmark = pytest.mark.acceptance
#: Minutes of waiting: taken up first by the parallel processes (tests/conftest.py).
STARTS_FIRST = True

#: A Redis visibility timeout far below the delay: an ETA kept in the broker would be
#: handed to a second worker while the first still holds it (celery#2599).
SHORT_VISIBILITY = {
    "CONVEYOR_BROKER__VISIBILITY_TIMEOUT_S": "20",
    "CONVEYOR_WORKER__TIME_LIMIT_S": "15",
    "CONVEYOR_WORKER__SOFT_TIME_LIMIT_S": "10",
    "CONVEYOR_WORKER__RETRY_BACKOFF_MAX_S": "10",
    "CONVEYOR_LEDGER__HOLD_AFTER_S": "5",
}


def test_200_jobs_due_in_a_minute_each_run_once_within_2s_of_due(
    broker: Broker, effects: Effects
) -> None:
    workers = [
        Worker(broker.url, queues="default", concurrency=2, env=SHORT_VISIBILITY).start()
        for _ in range(2)
    ]
    try:
        base = datetime.now(UTC) + timedelta(seconds=60)
        due = {f"due{index:03d}": base + timedelta(seconds=index % 20) for index in range(200)}
        for index, (key, when) in enumerate(due.items()):
            if index % 2:
                probe_tasks.record.apply_async(args=[key], eta=when)
            else:
                countdown = (when - datetime.now(UTC)).total_seconds()
                probe_tasks.record.apply_async(args=[key], countdown=countdown)
        assert depths()["default"] == 0, "nothing due later sits in the broker"
        wait_for(lambda: len(effects.rows("due", "done")) == 200, 120, "all 200 jobs")
        time.sleep(3)  # room for a duplicate to show itself
    finally:
        for worker in workers:
            worker.terminate()
    starts: dict[str, list[datetime]] = {}
    for key, _, _, _, at in effects.rows("due", "start"):
        starts.setdefault(key, []).append(at)
    assert sorted(starts) == sorted(due), "every job ran"
    assert all(len(times) == 1 for times in starts.values()), "a job ran twice"
    lateness = {key: (times[0] - due[key]).total_seconds() for key, times in starts.items()}
    assert min(lateness.values()) >= -0.05, "a job ran before it was due"
    assert max(lateness.values()) <= 2.0, sorted(lateness.values())[-5:]


def test_transactional_enqueue_publishes_on_commit_only_even_after_a_crash(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    with engine().connect() as conn:
        transaction = conn.begin()
        rolled_back = service.enqueue("probe.record", {"key": "rolled-back"}, connection=conn)
        transaction.rollback()
        with conn.begin():
            committed = service.enqueue("probe.record", {"key": "committed"}, connection=conn)
    # A producer that dies right after its commit, before anything else could happen.
    crash = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import os\n"
                "import tests.acceptance.probe_tasks\n"
                "from app.db import engine\n"
                "from app.jobs.service import JobService\n"
                "with engine().connect() as conn:\n"
                "    with conn.begin():\n"
                "        job = JobService().enqueue(\n"
                "            'probe.record', {'key': 'crashed'}, connection=conn)\n"
                "    print(job, flush=True)\n"
                "    os._exit(0)\n"
            ),
        ],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_BROKER__URL": broker.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crash.returncode == 0, crash.stderr
    with Worker(broker.url, queues="default", concurrency=1):
        wait_for(lambda: effects.count("committed", "done") == 1, 30, "the committed job")
        wait_for(lambda: effects.count("crashed", "done") == 1, 30, "the crashed producer's job")
        sentinel = service.enqueue("probe.record", {"key": "tx-sentinel"})
        wait_for(lambda: service.get(sentinel)["status"] == "completed", 30, "the sentinel")
        time.sleep(1)
    assert effects.count("rolled-back") == 0
    assert effects.count("committed") == 1 and effects.count("crashed") == 1
    assert service.get(committed)["status"] == "completed"
    assert service.get(crash.stdout.strip())["status"] == "completed"
    with pytest.raises(Exception, match="no job"):
        service.get(rolled_back)


def test_a_cancelled_scheduled_job_is_never_released(broker: Broker) -> None:
    service = JobService()
    job_id = service.enqueue("probe.record", {"key": "never"}, schedule=timedelta(hours=1))
    assert service.get(job_id)["status"] == "scheduled"
    service.cancel(job_id)
    with engine().begin() as conn:  # an hour passes: make it due
        conn.exec_driver_sql("UPDATE jobs SET due_at = now() WHERE id = %s", (job_id,))
    assert Releaser(app).release_due() == 0
    assert depths()["default"] == 0
    assert service.get(job_id)["status"] == "cancelled"
