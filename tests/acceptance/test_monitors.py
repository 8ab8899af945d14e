"""Conveyor's monitors in a real ``python -m app services`` process, against real workers.

The queue monitor sees jobs die and a queue no worker consumes back up, and resolves
both once an operator purges the dead jobs and cancels the waiting one; the memory
monitor sees a worker whose task keeps a large allocation, from the worker's own
heartbeats, and resolves once the worker is gone. Alerts are read where an operator
reads them (:mod:`app.services.alerts`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
import pytest
from sqlalchemy import text

from app.db import engine
from app.errors import JobNotFound
from app.jobs.service import JobService
from app.services import alerts
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.test_services import Services, forget_services
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

#: The monitors look twice a second; the built-in services are on (the probes are off).
MONITORS = {"CONVEYOR_SERVICES__BUILTINS": "true", "CONVEYOR_MONITORS__INTERVAL_S": "0.5"}
#: MiB the hoarding task keeps in its pool process, and the limit above the footprint.
HOARD_MIB, HEADROOM_MIB = 150, 60


@pytest.fixture
def quiet(effects: Effects) -> Iterator[Effects]:
    """No alert, no service row, no lease of a service, before and after."""

    def forget() -> None:
        forget_services()
        with engine().begin() as conn:
            conn.execute(text("TRUNCATE alerts"))

    forget()
    yield effects
    forget()


def status(job_id: str) -> str | None:
    """The job's status in the ledger; None until its first record is written."""
    try:
        return str(JobService().get(job_id)["status"])
    except JobNotFound:
        return None


def open_keys() -> set[str]:
    return {alert.key for alert in alerts.open_alerts()}


def test_the_queue_monitor_fires_on_dead_jobs_and_an_old_backlog_then_resolves(
    broker: Broker, quiet: Effects
) -> None:
    keys = [f"mon-{broker.name}-{index}" for index in range(3)]
    for key in keys:
        quiet.flag(key, True)
    jobs = JobService()
    with Worker(broker.url, queues="default", concurrency=2):
        doomed = [probe_tasks.broken.delay(key).id for key in keys]
        # No worker consumes `reports`: this job waits there.
        waiting = probe_tasks.record.apply_async(("mon-waiting",), queue="reports").id
        wait_for(lambda: all(status(job) == "dead" for job in doomed), 60, "three dead")
    env = {
        **MONITORS,
        "CONVEYOR_MONITORS__FAILURES_THRESHOLD": "3",
        "CONVEYOR_MONITORS__BACKLOG_AGE_S": "2",
    }
    with Services("h-monitor", "conveyor.queues", env):
        wanted = {"queue.default.failures", "queue.reports.backlog"}
        wait_for(lambda: wanted <= open_keys(), 30, "both alerts")
        by_key = {alert.key: alert for alert in alerts.open_alerts()}
        assert by_key["queue.default.failures"].subject == "3 jobs of queue default failed"
        assert by_key["queue.reports.backlog"].labels["queue"] == "reports"
        assert open_keys() == wanted, "nothing else is wrong"

        for job in doomed[:1]:
            jobs.purge(job)  # two dead left: under the threshold
        jobs.cancel(waiting)  # nothing waits in `reports` any more
        wait_for(lambda: not open_keys(), 30, "both alerts to resolve")
    resolved = {alert.key: alert for alert in alerts.recent_alerts(10)}
    assert set(resolved) == wanted, "no other alert was raised"
    assert all(alert.resolved_at is not None for alert in resolved.values())
    assert all(alert.resolution.startswith("cleared") for alert in resolved.values())


def test_the_memory_monitor_fires_for_a_worker_whose_task_holds_too_much(
    redis_broker: Broker, quiet: Effects
) -> None:
    beats = {"CONVEYOR_LEDGER__HEARTBEAT_INTERVAL_S": "1"}
    with Worker(redis_broker.url, queues="default", concurrency=1, env=beats) as worker:
        probe_tasks.frozen.delay().get(timeout=30)  # a job run: the pool process is warm
        processes = [psutil.Process(pid) for pid in (worker.pid, *worker.pool_pids())]
        footprint_mib = max(process.memory_info().rss for process in processes) >> 20
        limit_mib = footprint_mib + HEADROOM_MIB
        env = {**MONITORS, "CONVEYOR_MONITORS__WORKER_RSS_MB": str(limit_mib)}
        with Services("h-memory", "conveyor.memory", env):
            key = f"worker.{worker.hostname}.memory"
            # Under the limit: nothing fires in the monitor's first looks (four a second
            # apart, after the worker's next heartbeat).
            time.sleep(3)
            assert not open_keys(), alerts.open_alerts()
            assert probe_tasks.hoard.delay("mon-hoard", HOARD_MIB).get(timeout=60) == HOARD_MIB
            wait_for(lambda: key in open_keys(), 30, "the memory alert")
            (alert,) = alerts.open_alerts()
            assert alert.labels["rss_bytes"] > limit_mib << 20
            assert alert.labels["worker"] == worker.hostname
            worker.terminate()
            # Its heartbeat goes stale: the worker is no longer judged.
            wait_for(lambda: not open_keys(), 30, "the alert to resolve")
