"""``/health/*`` and ``/metrics`` of a real web process, over real workers, beat and broker.

The broker is a Redis server of this module's own, so stopping it disturbs nobody;
one worker consumes ``critical,default,emails,reports`` and another ``background``
alone, so one queue can lose its only worker. Readiness is polled every 0.5 s and
the time it takes to turn red and green again is measured.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.embedded import EmbeddedRedis, free_port
from app.errors import JobNotFound
from app.jobs.service import JobService
from app.web.health import broker_connection, queue_depths
from app.web.metrics import ConveyorCollector
from beat.service import ScheduleService, ensure_django
from config.settings import QUEUES, get_settings
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import PROBES, Beat, Web, Worker
from tests.servers import TEST_REDIS_DB, Broker, configure, services

pytestmark = pytest.mark.acceptance

#: Longest a fault may take to show in /health/ready (the issue's bound).
RED_WITHIN_S = 10.0


@dataclass
class System:
    """The processes of one Conveyor deployment, and a read token for its web."""

    broker: EmbeddedRedis
    env: dict[str, str]
    web: Web
    workers: dict[str, Worker]
    beat: Beat
    token: str

    def get(self, path: str, token: str | None = None, **headers: str) -> tuple[int, Any, str]:
        """Status, headers and body of a GET on the web process."""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.web.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.headers, reply.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.headers, refused.read().decode()

    def ready(self, query: str = "") -> tuple[int, dict[str, Any]]:
        """Status and body of /health/ready, with the read token."""
        status, _, body = self.get(f"/health/ready{query}", self.token)
        return status, json.loads(body)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, by name and labels."""
        status, _, body = self.get("/metrics", self.token)
        assert status == 200, body
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    """The value of one sample, None when it is absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


def until(
    system: System,
    wanted: Callable[[int, dict[str, Any]], bool],
    timeout_s: float,
    what: str,
    query: str = "",
) -> tuple[float, dict[str, Any]]:
    """Poll readiness every 0.5 s until ``wanted``; the seconds it took and the last body."""
    started = time.monotonic()
    while True:
        status, body = system.ready(query)
        if wanted(status, body):
            return time.monotonic() - started, body
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s}s; last answer {status} {body}")
        time.sleep(0.5)


def lag(system: System, schedule: str) -> float:
    """``conveyor_schedule_lag_seconds`` of one schedule (infinite when absent)."""
    value = sample(system.metrics(), "conveyor_schedule_lag_seconds", schedule=schedule)
    return float("inf") if value is None else value


def green(status: int, body: dict[str, Any]) -> bool:
    return status == 200


def background_worker(system: System) -> Worker:
    worker = Worker(system.broker.url, queues="background", name=f"bg{uuid.uuid4().hex[:6]}")
    worker.env.update(system.env)
    return worker


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Own Redis broker, web, two workers and a beat; an empty ledger; a read token."""
    with probe_tasks.connect() as conn:
        conn.execute(probe_tasks.DDL)
        conn.execute("TRUNCATE probe_effects, probe_flags")
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events, workers"))
    broker = EmbeddedRedis(Path(tmp_path_factory.mktemp("broker")), free_port())
    broker.start()
    env = {
        **os.environ,
        "CONVEYOR_BROKER__URL": broker.url,
        "CONVEYOR_CACHE__URL": f"{services().redis_base_url}/{TEST_REDIS_DB}",
    }
    ensure_django()
    from app.web.tokens import create

    _, token = create("health probe", "read", days=1)
    web = Web(env=env)
    main = Worker(broker.url, queues="critical,default,emails,reports", env=env)
    beat = Beat(broker.url, env=env)
    system = System(broker, env, web, {"main": main}, beat, token)
    system.workers["background"] = background_worker(system)
    try:
        web.start()
        for worker in system.workers.values():
            worker.start()
        beat.start()
        yield system
    finally:
        system.beat.terminate()
        for worker in system.workers.values():
            worker.kill()
        web.terminate()
        broker.stop()


@pytest.fixture
def producer(system: System) -> Iterator[Broker]:
    """This process's Celery app, publishing to the system's broker for one test."""
    settings = get_settings()
    configure(
        app,
        settings.model_copy(
            update={"broker": settings.broker.model_copy(update={"url": system.broker.url})}
        ),
    )
    try:
        yield Broker("redis", system.broker.url)
    finally:
        configure(app, get_settings())


def test_queue_depths_on_each_broker_count_every_published_message(broker: Broker) -> None:
    """In-process, with no worker running: every published message is counted, per queue."""
    for i in range(3):
        probe_tasks.record.apply_async((f"depth-{i}",), queue="emails")
    with broker_connection() as conn:
        depths = queue_depths(conn)
    assert depths == {**dict.fromkeys(QUEUES, 0), "emails": 3}
    samples = {
        (s.name, tuple(s.labels.values())): s.value
        for family in ConveyorCollector().collect()
        for s in family.samples
    }
    assert samples[("conveyor_queue_depth", ("emails",))] == 3
    assert samples[("conveyor_scrape_error", ("broker",))] == 0


def test_only_live_is_open(system: System) -> None:
    assert system.get("/health/live")[0] == 200
    for path in ("/health/ready", "/metrics"):
        for token in (None, "cvy_0000_not-a-token", system.token[:-2] + "xx"):
            status, headers, body = system.get(path, token)
            assert status == 401, (path, token, body)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert json.loads(body)["error"]["field"] == "Authorization"


def test_ready_is_green_with_each_check_when_everything_runs(system: System) -> None:
    _, body = until(system, green, 30, "ready")
    checks = body["checks"]
    assert set(checks) == {"database", "redis", "beat", "broker", "workers", "consuming"}
    assert all(check["ok"] for check in checks.values()), checks
    assert body["failing"] == []
    assert checks["beat"]["leader"]
    assert checks["workers"]["count"] == 2
    queues = checks["workers"]["queues"]
    assert queues["background"] == [system.workers["background"].hostname]
    assert all(queues[q] == [system.workers["main"].hostname] for q in QUEUES[:-1])
    assert set(checks["broker"]["depths"]) == set(QUEUES)
    started = time.monotonic()
    system.ready()
    assert time.monotonic() - started < 3, "readiness must answer within 3 s"


def test_ready_refuses_a_bad_stall_threshold(system: System) -> None:
    for value in ("abc", "0", "1e9"):
        status, _, body = system.get(f"/health/ready?stalled_after_s={value}", system.token)
        assert status == 400
        assert json.loads(body)["error"]["field"] == "stalled_after_s"


def test_metrics_count_jobs_dead_letters_workers_and_the_leader(
    system: System, producer: Broker
) -> None:
    until(system, green, 30, "ready")
    before = system.metrics()
    completed = sample(before, "conveyor_jobs", state="completed", queue="default") or 0
    for i in range(3):
        probe_tasks.record.delay(f"metrics-{i}")
    wait_for(
        lambda: (
            sample(system.metrics(), "conveyor_jobs", state="completed", queue="default")
            == completed + 3
        ),
        30,
        "three more completed jobs in /metrics",
    )
    Effects().flag("metrics-broken", True)
    probe_tasks.broken.delay("metrics-broken")
    wait_for(
        lambda: (
            sample(metrics := system.metrics(), "conveyor_dead_letters") == 1
            and sample(metrics, "conveyor_jobs", state="dead", queue="default") == 1
        ),
        40,
        "the broken job dead in the ledger and in the dead letters",
    )
    after = system.metrics()
    for queue in QUEUES:
        assert sample(after, "conveyor_queue_depth", queue=queue) == 0
    assert sample(after, "conveyor_workers_alive") == 2
    leader = system.ready()[1]["checks"]["beat"]["leader"]
    assert sample(after, "conveyor_beat_leader", holder=leader) == 1
    for part in ("jobs", "workers", "broker", "beat", "schedules"):
        assert sample(after, "conveyor_scrape_error", part=part) == 0
    lags = {k[1][0][1]: v for k, v in after.items() if k[0] == "conveyor_schedule_lag_seconds"}
    assert lags and all(seconds < 5 for seconds in lags.values()), lags


def test_dead_letters_return_to_zero_after_requeue_and_purge_from_the_cli(
    system: System, producer: Broker
) -> None:
    """The operator's count is the ledger's: what a requeue or a purge takes out leaves it."""
    effects = Effects()
    before = sample(system.metrics(), "conveyor_dead_letters") or 0
    keys = ["cli-requeued", "cli-purged"]
    for key in keys:
        effects.flag(key, True)
    jobs = {key: probe_tasks.broken.delay(key).id for key in keys}
    wait_for(
        lambda: sample(system.metrics(), "conveyor_dead_letters") == before + 2,
        40,
        "two more dead jobs",
    )

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "app", "dead", *args],
            env={**system.env, "CONVEYOR_TASK_MODULES": PROBES},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    effects.flag("cli-requeued", False)
    assert cli("requeue", jobs["cli-requeued"]).strip() == "requeued 1 dead job"
    wait_for(lambda: effects.count("cli-requeued", "done") == 1, 30, "the requeued job to run")
    purged = int(before) + 1  # every dead probe.broken job, earlier tests' too
    assert cli("purge", "--handler", "probe.broken").split()[:2] == ["purged", str(purged)]
    wait_for(lambda: sample(system.metrics(), "conveyor_dead_letters") == 0, 30, "no dead letter")
    service = JobService()
    assert service.get(jobs["cli-requeued"])["status"] == "completed"
    with pytest.raises(JobNotFound):
        service.get(jobs["cli-purged"])
    ensure_django()
    from app.web.models import AuditRecord

    purge = AuditRecord.objects.filter(action="job.bulk_purge").latest("id")
    assert purge.actor.startswith("cli:")
    assert jobs["cli-purged"] in purge.after["done"]
    assert len(purge.after["done"]) == purged


def test_ready_names_a_queue_whose_worker_answers_but_consumes_nothing(
    system: System, producer: Broker
) -> None:
    until(system, green, 30, "ready")
    worker = system.workers["background"]
    children = worker.pool_pids()
    for pid in children:  # the worker answers pings, but no task can start
        os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(3):
            probe_tasks.record.apply_async((f"stalled-{i}",), queue="background")
        took, body = until(
            system,
            lambda status, body: status == 503 and body["failing"] == ["consuming"],
            20,
            "the stalled queue in readiness",
            query="?stalled_after_s=2",
        )
        print(f"stalled queue red after {took:.1f}s (threshold 2 s)")
        assert took < 10
        checks = body["checks"]
        assert list(checks["consuming"]["stalled"]) == ["background"]
        assert checks["workers"]["ok"], "the stalled worker still answers"
        assert checks["broker"]["depths"]["background"] >= 1
    finally:
        for pid in children:
            os.kill(pid, signal.SIGCONT)
    until(system, green, 30, "ready once the worker consumes again")
    assert all(Effects().count(f"stalled-{i}", "done") == 1 for i in range(3))


def test_ready_goes_red_when_a_queues_only_worker_stops_and_green_when_one_starts(
    system: System,
) -> None:
    until(system, green, 30, "ready")
    stopped = time.monotonic()
    system.workers["background"].terminate()
    print(f"the worker took {time.monotonic() - stopped:.1f}s to stop")
    _, body = until(
        system,
        lambda status, body: status == 503 and body["failing"] == ["workers"],
        RED_WITHIN_S,
        "readiness naming the queue without a worker",
    )
    red_s = time.monotonic() - stopped
    print(f"red {red_s:.1f}s after the background worker was stopped")
    assert red_s < RED_WITHIN_S
    workers = body["checks"]["workers"]
    assert workers["missing"] == ["background"]
    assert "background" in workers["error"]
    system.workers["background"] = background_worker(system).start()
    took, _ = until(system, green, 30, "ready with a new background worker")
    print(f"green {took:.1f}s after a new background worker was ready")
    assert took < 10


def test_beat_down_shows_in_ready_and_in_the_schedule_lag(system: System) -> None:
    schedules = ScheduleService()
    schedules.create("health-lag", "probe.stamp", "*/2 * * * * *", misfire="skip", overlap="allow")
    try:
        until(system, green, 30, "ready")
        wait_for(lambda: lag(system, "health-lag") < 3, 15, "the schedule on time")
        system.beat.terminate()  # gives the lease up at once
        until(
            system,
            lambda status, body: status == 503 and body["failing"] == ["beat"],
            RED_WITHIN_S,
            "readiness without a beat leader",
        )
        assert sample(system.metrics(), "conveyor_beat_leader", holder="") == 0
        wait_for(lambda: 3 < lag(system, "health-lag") < 60, 10, "a lag while nobody fires")
        system.beat = Beat(system.broker.url, env=system.env).start()
        until(system, green, 30, "ready with a beat leader again")
        wait_for(lambda: lag(system, "health-lag") < 3, 15, "beat on time again")
    finally:
        schedules.delete("health-lag")


def test_ready_goes_red_when_the_broker_stops_and_green_after_it_restarts(
    system: System,
) -> None:
    until(system, green, 30, "ready")
    stopped = time.monotonic()
    system.broker.stop()
    try:
        _, body = until(
            system,
            lambda status, body: status == 503 and not body["checks"]["broker"]["ok"],
            RED_WITHIN_S,
            "readiness without a broker",
        )
        red_s = time.monotonic() - stopped
        print(f"red {red_s:.1f}s after the broker was stopped")
        assert red_s < RED_WITHIN_S
        assert {"broker", "workers"} <= set(body["failing"])
        samples = system.metrics()
        assert sample(samples, "conveyor_scrape_error", part="broker") == 1
        assert sample(samples, "conveyor_scrape_error", part="jobs") == 0
        assert sample(samples, "conveyor_queue_depth", queue="default") is None
    finally:
        system.broker.start()
    took, _ = until(system, green, 60, "ready after the broker is back")
    print(f"green {took:.1f}s after the broker restarted")
