"""Jobs a dead worker left running come back within the recovery bound and complete once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection

import pytest

from app.jobs.service import JobService
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

FAST_RECOVERY = {
    "CONVEYOR_LEDGER__HEARTBEAT_INTERVAL_S": "1",
    "CONVEYOR_LEDGER__RECOVERY_AFTER_S": "5",
}
#: The recovery bound of FAST_RECOVERY and a heartbeat to act on it, seconds.
FAST_RECOVERY_BOUND_S = 5 + 2


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


def test_outcomes_a_killed_worker_had_not_written_are_kept_and_not_run_again(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    # Batches every 10 s: the outcomes are acknowledged and in the gate, not in PostgreSQL.
    slow_ledger = {**FAST_RECOVERY, "CONVEYOR_LEDGER__FLUSH_INTERVAL_S": "10"}
    doomed = Worker(broker.url, queues="default", concurrency=2, env=slow_ledger).start()
    keys = [f"unwritten{index}" for index in range(10)]
    jobs = {key: service.enqueue("probe.record", {"key": key}) for key in keys}
    wait_for(lambda: len(effects.rows("unwritten", "done")) == 10, 30, "ten finished jobs")
    time.sleep(1)  # the last acknowledgements
    assert not any(service.get(job)["status"] == "completed" for job in jobs.values()), (
        "the ledger was written before the kill: nothing is tested"
    )
    doomed.kill()
    with Worker(broker.url, queues="default", concurrency=2, env=FAST_RECOVERY):
        wait_for(
            lambda: all(service.get(job)["status"] == "completed" for job in jobs.values()),
            30,
            "the ledger to show every job completed",
        )
        time.sleep(FAST_RECOVERY_BOUND_S)  # past the recovery bound: nothing is requeued
    assert all(effects.count(key, "done") == 1 for key in keys), effects.rows("unwritten")
    history = service.history(jobs["unwritten0"])
    assert history[-1]["to_status"] == "completed"
    assert "its worker process was gone" in (history[-1]["detail"] or "")


def backlog(service: JobService, prefix: str, n: int = 300) -> dict[str, str]:
    """``n`` short jobs on ``default``, by effect key."""
    return {
        f"{prefix}{index}": service.enqueue(
            "probe.record", {"key": f"{prefix}{index}", "sleep_s": 0.05}
        )
        for index in range(n)
    }


def each_done_once(
    effects: Effects, prefix: str, keys: dict[str, str], killed: Collection[int] = ()
) -> None:
    """Every job of ``keys`` done once, but for the one each ``killed`` pool process
    (by pid) may have been cut off in: its task's effect was its last act, the kill
    came before the outcome reached the gate, and the job ran again, as promised of a
    task whose process dies mid-run. Any other second run is a duplicate."""
    rows = effects.rows(prefix)
    last = {pid: (key, phase) for key, phase, pid, _retries, _at in rows}
    cut_off = {key for pid, (key, phase) in last.items() if pid in killed and phase == "done"}
    done = Counter(key for key, phase, *_ in rows if phase == "done")
    wrong = {key: done[key] for key in keys if done[key] != 1}
    assert {key: n for key, n in wrong.items() if not (n == 2 and key in cut_off)} == {}, (
        "not done exactly once"
    )


def test_a_whole_worker_killed_mid_backlog_loses_no_job_it_had_received(
    broker: Broker, effects: Effects
) -> None:
    """What the killed worker had received but the ledger did not show running (reserved,
    or started with its ``running`` still in the recorder's batch) comes back too, though
    Redis's visibility timeout is the default hour."""
    service = JobService()
    doomed = Worker(broker.url, queues="default", concurrency=2, env=FAST_RECOVERY).start()
    keys = backlog(service, "whole")
    wait_for(lambda: len(effects.rows("whole", "done")) >= 60, 60, "60 jobs done")
    killed = doomed.pool_pids()
    doomed.kill()
    killed_at = time.monotonic()
    time.sleep(5)
    with Worker(broker.url, queues="default", concurrency=2, env=FAST_RECOVERY):
        wait_for(
            lambda: len(effects.rows("whole", "done")) >= len(keys),
            FAST_RECOVERY_BOUND_S * 2 + 60,
            "every job done",
        )
        recovered_in = time.monotonic() - killed_at
        time.sleep(2)  # room for a duplicate run to show itself
    each_done_once(effects, "whole", keys, killed)
    # Its own start, then a recovery bound for the new worker's reports, then a heartbeat.
    assert recovered_in < 5 + 2 * FAST_RECOVERY_BOUND_S + 30, f"took {recovered_in:.1f}s"


def test_one_of_three_workers_killed_for_good_loses_no_job(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    with (
        Worker(broker.url, queues="default", concurrency=1, name="kept1", env=FAST_RECOVERY),
        Worker(broker.url, queues="default", concurrency=1, name="kept2", env=FAST_RECOVERY),
    ):
        doomed = Worker(
            broker.url, queues="default", concurrency=1, name="doomed", env=FAST_RECOVERY
        ).start()
        keys = backlog(service, "third")
        wait_for(lambda: len(effects.rows("third", "done")) >= 60, 60, "60 jobs done")
        killed = doomed.pool_pids()
        doomed.kill()
        wait_for(
            lambda: len(effects.rows("third", "done")) >= len(keys),
            FAST_RECOVERY_BOUND_S * 2 + 60,
            "every job done",
        )
        time.sleep(2)
    each_done_once(effects, "third", keys, killed)
