"""Conveyor's monitors in a real ``python -m app services`` process, against real workers,
beats and services.

The queue monitor sees jobs die and a queue no worker consumes back up, and resolves
both once an operator purges the dead jobs and cancels the waiting one; the memory
monitor sees a worker whose task keeps a large allocation, from the worker's own
heartbeats, and resolves once the worker is gone. The beat monitor sees the leader
lease expired, resolves once a beat process takes it, and fires again once that beat
is killed; the services monitor sees a service of another services process degrade
and recover, and a failed singleton that no host runs until another host takes it
over. Alerts are read where an operator reads them (:mod:`app.services.alerts`).
"""

from __future__ import annotations

import re
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
from tests.acceptance.probe_monitors import WOBBLY
from tests.acceptance.test_services import Services, forget_services
from tests.acceptance.workers import Beat, Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

#: The monitors look twice a second; the built-in services are on (the probes are off).
MONITORS = {"CONVEYOR_SERVICES__BUILTINS": "true", "CONVEYOR_MONITORS__INTERVAL_S": "0.5"}
#: MiB the hoarding task keeps in its pool process, and the limit above the footprint.
HOARD_MIB, HEADROOM_MIB = 150, 60
#: Seconds without a beat leader before ``beat.leader`` fires, and the beats' short lease.
BEAT_GRACE_S = 2
BEATS = {"CONVEYOR_BEAT__LEASE_TTL_S": "2", "CONVEYOR_BEAT__RENEW_INTERVAL_S": "0.5"}
#: The services process of ``probe.wobbly``: it retries within 0.2 s and never fails.
WOBBLY_MODULES = {"CONVEYOR_SERVICES__MODULES": '["tests.acceptance.probe_monitors"]'}
WOBBLY_CONF = {"error_backoff_s": 0.1, "error_backoff_max_s": 0.2, "max_consecutive_errors": 10_000}


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


@pytest.fixture
def leaderless(quiet: Effects) -> Iterator[None]:
    """The leader lease as a beat that died a minute ago left it (expired); gone after."""
    with engine().begin() as conn:
        conn.execute(text("DELETE FROM conveyor_beat_lease WHERE name = 'beat'"))
        conn.execute(
            text(
                "INSERT INTO conveyor_beat_lease (name, holder, acquired_at, renewed_at, "
                "expires_at) VALUES ('beat', 'gone:1:dead', now() - interval '2 minutes', "
                "now() - interval '1 minute', now() - interval '1 minute')"
            )
        )
    yield
    with engine().begin() as conn:
        conn.execute(text("DELETE FROM conveyor_beat_lease WHERE name = 'beat'"))


def test_the_beat_monitor_fires_while_no_beat_leads_and_resolves_when_a_beat_takes_the_lease(
    redis_broker: Broker, leaderless: None
) -> None:
    env = {**MONITORS, "CONVEYOR_MONITORS__BEAT_LEADER_GRACE_S": str(BEAT_GRACE_S)}
    with Services("h-beat", "conveyor.beat", env):
        wait_for(lambda: "beat.leader" in open_keys(), 30, "the beat alert")
        (alert,) = alerts.open_alerts()
        assert alert.severity == "critical"
        assert alert.subject == "no beat leads: recurring jobs do not fire"
        assert alert.labels == {"monitor": "conveyor.beat"}
        leaderless = re.search(r"held the leader lease for (\d+) s", alert.detail)
        assert leaderless is not None, alert.detail
        assert int(leaderless[1]) >= BEAT_GRACE_S, f"fired within the grace: {alert.detail}"

        with Beat(redis_broker.url, env=BEATS) as beat:
            wait_for(lambda: not open_keys(), 30, "the alert to resolve")
            (resolved,) = alerts.recent_alerts(5)
            assert resolved.id == alert.id
            assert resolved.resolution == "cleared: no beat leader no more"
            time.sleep(BEAT_GRACE_S + 1)  # the monitor's looks while the beat leads
            assert not open_keys(), "a leading beat raises nothing"
            beat.kill()  # no chance to give the lease up: it expires after its TTL
            wait_for(lambda: "beat.leader" in open_keys(), 30, "the alert once the lease expired")
    (again, first) = alerts.recent_alerts(5)
    assert again.id != first.id and first.id == alert.id, "a new alert for the new outage"
    assert again.resolved_at is None


def test_the_services_monitor_fires_for_a_degraded_service_and_resolves_when_it_recovers(
    quiet: Effects,
) -> None:
    key = f"service.{WOBBLY}.h-wobbly.degraded"
    with (
        Services("h-wobbly", WOBBLY, WOBBLY_MODULES, **WOBBLY_CONF),
        Services("h-watch", "conveyor.services", MONITORS),
    ):
        time.sleep(1.5)  # three looks of the monitor at a service that runs well
        assert not open_keys(), alerts.open_alerts()
        quiet.flag(WOBBLY, True)
        wait_for(lambda: key in open_keys(), 30, "the degraded alert")
        (alert,) = alerts.open_alerts()
        assert alert.severity == "warning"
        assert alert.subject == f"service {WOBBLY} is degraded on h-wobbly"
        assert "probe.wobbly fails while its flag is set" in alert.detail
        assert alert.labels == {
            "service": WOBBLY,
            "host": "h-wobbly",
            "monitor": "conveyor.services",
        }
        quiet.flag(WOBBLY, False)
        wait_for(lambda: not open_keys(), 30, "the alert to resolve")
    (resolved,) = alerts.recent_alerts(5)
    assert resolved.id == alert.id
    assert resolved.resolution == "cleared: the service is degraded or failed no more"


#: ``probe.doomed`` fails its process after three errors a tenth of a second apart.
DOOMED_CONF = {"error_backoff_s": 0.1, "max_consecutive_errors": 3}
RESCUE = {"CONVEYOR_TEST_DOOMED_OK": "1"}


def fail_doomed_on(host: str) -> None:
    """Run the singleton ``probe.doomed`` on ``host`` until it fails its process."""
    with Services(host, "probe.doomed", **DOOMED_CONF) as failing:
        assert failing.exit_code(60) == 1, failing.output()[-3000:]


def ran_in(effects: Effects, process: Services) -> bool:
    """True once an iteration of ``probe.doomed`` ran in ``process``."""
    return any(pid == process.pid for _, _, pid, *_ in effects.rows("probe.doomed:"))


def raised_by_monitor(key: str) -> alerts.Alert | None:
    """The open alert of ``key`` once the services monitor raised it."""
    for alert in alerts.open_alerts():
        if alert.key == key and (alert.labels or {}).get("monitor") == "conveyor.services":
            return alert
    return None


def test_the_services_monitor_fires_for_a_failed_singleton_until_another_host_runs_it(
    quiet: Effects,
) -> None:
    key = "service.probe.doomed.h-doomed.failed"
    with Services("h-watch", "conveyor.services", MONITORS):
        fail_doomed_on("h-doomed")
        # The failure raised the alert; the monitor sees the singleton run by no host.
        alert = wait_for(lambda: raised_by_monitor(key), 30, "the monitor's failed alert")
        assert alert.severity == "critical"
        assert alert.subject == "service probe.doomed is failed on h-doomed"
        assert "probe.doomed fails on purpose" in alert.detail
        assert open_keys() == {key}, "nothing else is wrong"
        with Services("h-rescue", "probe.doomed", RESCUE):
            wait_for(lambda: not open_keys(), 30, "the alert to resolve")
            (resolved,) = [seen for seen in alerts.recent_alerts(10) if seen.key == key]
            assert resolved.id == alert.id
            assert resolved.resolution == "cleared: probe.doomed runs on another host"
        # Stopped there too, the singleton runs nowhere: the monitor raises it again.
        wait_for(lambda: key in open_keys(), 30, "the alert once h-rescue stopped")


def test_a_failure_alert_the_monitor_never_saw_firing_resolves_once_another_host_runs_it(
    quiet: Effects,
) -> None:
    """The singleton is handed over between two looks of the monitor (60 s apart by
    default): its first look already finds another host running it."""
    key = "service.probe.doomed.h-doomed.failed"
    fail_doomed_on("h-doomed")
    (alert,) = alerts.open_alerts()
    assert alert.key == key
    with Services("h-rescue", "probe.doomed", RESCUE) as rescue:
        wait_for(lambda: ran_in(quiet, rescue), 30, "an iteration on h-rescue")
        with Services("h-watch", "conveyor.services", MONITORS):
            wait_for(lambda: not open_keys(), 30, "the failure alert to resolve")
    (resolved,) = alerts.recent_alerts(5)
    assert resolved.id == alert.id
    assert resolved.resolution == "cleared: probe.doomed runs on another host"
