"""A leaking task recycles its pool process at ``worker_max_memory_per_child``; no job is lost.

``probe.hoard`` keeps 20 MiB more in its pool process each time it runs. With the
limit 50 MiB above what a pool process holds after its first job, a process is
replaced after its third: 30 jobs need about ten of them, and each job still runs
exactly once (counted by its effect rows, which carry the pid that ran it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from app.jobs.service import JobService
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker, use_broker

pytestmark = pytest.mark.acceptance

HOARD_MIB = 20
#: The limit, above a pool process's own footprint.
HEADROOM_MIB = 50
#: Jobs a process can run before its memory passes the limit (50 // 20 + 1).
JOBS_PER_PROCESS = HEADROOM_MIB // HOARD_MIB + 1
JOBS = 30


@pytest.fixture(scope="module")
def footprint_kib() -> int:
    """Resident KiB of a pool process that has run one job: what the limit sits above."""
    with (
        contextmanager(use_broker)("redis") as broker,
        Worker(broker.url, queues="default", concurrency=1) as worker,
    ):
        probe_tasks.frozen.delay().get(timeout=30)  # a job run, as in the test (no effect row)
        return max(psutil.Process(pid).memory_info().rss for pid in worker.pool_pids()) >> 10


@pytest.fixture(params=["redis", "rabbitmq"])
def memory_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each broker in turn."""
    yield from use_broker(request.param)


def test_a_leaking_task_recycles_its_pool_process_at_the_memory_limit_and_loses_no_job(
    memory_broker: Broker, effects: Effects, footprint_kib: int
) -> None:
    limit_kib = footprint_kib + HEADROOM_MIB * 1024
    env = {"CONVEYOR_WORKER__MAX_MEMORY_PER_CHILD_KIB": str(limit_kib)}
    keys = [f"leak{index:02d}" for index in range(JOBS)]
    with Worker(memory_broker.url, queues="default", concurrency=2, env=env):
        results = [probe_tasks.hoard.delay(key, HOARD_MIB) for key in keys]
        wait_for(lambda: len(effects.rows("leak", "done")) >= JOBS, 90, "every job to run")
        held = [result.get(timeout=30) for result in results]
    # Each job ran exactly once.
    assert all(effects.count(key, "start") == 1 for key in keys), effects.rows("leak")
    assert all(effects.count(key, "done") == 1 for key in keys), effects.rows("leak")
    service = JobService()
    assert {service.get(result.id)["status"] for result in results} == {"completed"}
    # Recycled: many processes, none of which ran more jobs than its memory allowed.
    per_process = Counter(row[2] for row in effects.rows("leak", "done"))
    assert len(per_process) >= JOBS // JOBS_PER_PROCESS, per_process
    assert max(per_process.values()) <= JOBS_PER_PROCESS, per_process
    assert max(held) <= JOBS_PER_PROCESS * HOARD_MIB, held
    assert max(per_process.values()) > 1, "a process ran one job only: limit below footprint"
    # Each process started afresh: its first job held 20 MiB, whatever the one before held.
    assert held.count(HOARD_MIB) == len(per_process), held
