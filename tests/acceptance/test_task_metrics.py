"""Per-task metrics and JSON log lines, from a real worker, as a real web process serves them.

A worker with JSON logs on runs a mixed load on each broker: jobs that complete,
jobs that fail and then complete on a retry, one that retries to death, one that
fails for good without dead-lettering, and ``probe.says``, which logs a line per
attempt three ways. ``/metrics`` of a real web process must then count, for each
task, the runs by outcome and the timed runs exactly as ``JobService`` reports
them, and the worker's output must hold a JSON line per attempt naming its job.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from celery.utils.log import get_task_logger
from prometheus_client.parser import text_string_to_metric_families

from app.celery import app
from app.errors import JobNotFound, TransientError
from app.jobs.service import JobService
from app.jobs.task import ConveyorTask
from config.settings import Settings
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import PROBES, Web, Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

#: The outcome label of each final state, and of a retry event.
OUTCOME = {"completed": "completed", "failed": "failed", "dead": "dead", "retrying": "retried"}
FINISHED = {"completed", "failed", "dead", "cancelled"}

task_logger = get_task_logger(__name__)
module_logger = logging.getLogger(__name__)


@app.task(bind=True, name="probe.says", max_retries=1, retry_backoff=1)
def says(self: ConveyorTask, key: str) -> int:
    """Log ``<key>: attempt <n>`` through the task logger, a module's logger and ``print``;
    the first attempt then fails with ``TransientError``, so that a retry logs too."""
    attempt = int(self.request.retries or 0) + 1
    task_logger.info("%s: attempt %d via the task logger", key, attempt)
    module_logger.warning("%s: attempt %d via a module logger", key, attempt)
    print(f"{key}: attempt {attempt} via print")
    if attempt == 1:
        raise TransientError(f"{key}: the first attempt fails on purpose")
    return attempt


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Scraper:
    """Reads ``/metrics`` of a web process with a read token."""

    def __init__(self, web: Web, token: str) -> None:
        self.web, self.token = web, token

    def samples(self) -> Samples:
        request = urllib.request.Request(
            self.web.url + "/metrics", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def scraper() -> Iterator[Scraper]:
    """A web process (gunicorn) over this run's ledger, and a read token for it."""
    from beat.service import ensure_django

    ensure_django()
    from app.web.tokens import create

    _, token = create("task metrics", "read", days=1)
    with Web() as web:
        yield Scraper(web, token)


def json_worker(broker: Broker) -> Worker:
    """A worker on ``default`` writing JSON lines, with ``probe.says`` registered."""
    worker = Worker(
        broker.url, queues="default", concurrency=2, env={"CONVEYOR_LOG__FORMAT": "json"}
    )
    worker.env["CONVEYOR_TASK_MODULES"] = json.dumps([*json.loads(PROBES), __name__])
    return worker


def expected_from_the_ledger(
    service: JobService, job_ids: list[str]
) -> tuple[Counter[tuple[str, str, str]], dict[tuple[str, str], list[float]]]:
    """Runs by (task, queue, outcome) and the seconds of each timed run by (task, queue),
    as JobService reports the jobs: each retry event, timed from the start before it, and
    each job's end, timed from its last start."""
    runs: Counter[tuple[str, str, str]] = Counter()
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for job_id in job_ids:
        job = service.get(job_id)
        key = (job["handler"], job["queue"])
        started = None
        for event in service.history(job_id):
            if event["to_status"] == "running" and event["from_status"] != "running":
                started = event["at"]
            elif event["to_status"] == "retrying" and event["from_status"] != "retrying":
                runs[(*key, "retried")] += 1
                assert started is not None, (job_id, "a retry without a start")
                durations[key].append((event["at"] - started).total_seconds())
        runs[(*key, OUTCOME[job["status"]])] += 1
        durations[key].append((job["finished_at"] - job["started_at"]).total_seconds())
    return runs, durations


def status(service: JobService, job_id: str) -> str | None:
    """The job's state, None while the ledger has not heard of it."""
    try:
        return str(service.get(job_id)["status"])
    except JobNotFound:
        return None


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_task_metrics_and_json_log_lines_match_the_ledger(
    broker: Broker, effects: Effects, scraper: Scraper
) -> None:
    service = JobService(app)
    effects.flag("tm-broken", on=True)
    worker = json_worker(broker)
    with worker:
        jobs = {
            "record": probe_tasks.record.delay("tm-record").id,
            "record-slow": probe_tasks.record.delay("tm-record-slow", 0.3).id,
            "flaky": probe_tasks.flaky.delay("tm-flaky", 1).id,
            "broken": probe_tasks.broken.delay("tm-broken").id,
            "plain": probe_tasks.fails_plainly.delay("tm-plain").id,
            "says": says.delay("tm-says").id,
        }
        wait_for(
            lambda: all(status(service, job) in FINISHED for job in jobs.values()),
            60,
            "every job of the mixed run to finish",
        )
        # One job waits in a queue nobody consumes: the age of the oldest in each queue.
        waiting = probe_tasks.record.apply_async(("tm-waiting",), queue="reports").id
        wait_for(lambda: status(service, waiting) == "queued", 10, "the waiting job")
        time.sleep(1.5)
        before = service.get(waiting)["status_at"]
        samples = scraper.samples()
        scraped_at = time.time()
    assert {name: service.get(job)["status"] for name, job in jobs.items()} == {
        "record": "completed",
        "record-slow": "completed",
        "flaky": "completed",
        "broken": "dead",
        "plain": "failed",
        "says": "completed",
    }

    runs, durations = expected_from_the_ledger(service, list(jobs.values()))
    # What the run did, by construction, is what the ledger says it did.
    assert runs == Counter(
        {
            ("probe.record", "default", "completed"): 2,
            ("probe.flaky", "default", "retried"): 1,
            ("probe.flaky", "default", "completed"): 1,
            ("probe.broken", "default", "retried"): 2,
            ("probe.broken", "default", "dead"): 1,
            ("probe.fails_plainly", "default", "failed"): 1,
            ("probe.says", "default", "retried"): 1,
            ("probe.says", "default", "completed"): 1,
        }
    )
    scraped_runs = {
        (labels["task"], labels["queue"], labels["outcome"]): value
        for (name, pairs), value in samples.items()
        if name == "conveyor_task_runs" and value
        for labels in [dict(pairs)]
    }
    assert scraped_runs == dict(runs)
    for task, queue in durations:
        for outcome in OUTCOME.values():  # every outcome of a task that ran, zeros too
            scraped = sample(samples, "conveyor_task_runs", task=task, queue=queue, outcome=outcome)
            assert scraped == runs[(task, queue, outcome)], (task, outcome)
    duration = "conveyor_task_duration_seconds"
    scraped_timed = {
        (labels["task"], labels["queue"]): value
        for (name, pairs), value in samples.items()
        if name == f"{duration}_gcount"
        for labels in [dict(pairs)]
    }
    assert scraped_timed == {key: len(seconds) for key, seconds in durations.items()}
    for (task, queue), seconds in durations.items():
        total = sample(samples, f"{duration}_gsum", task=task, queue=queue)
        assert total == pytest.approx(sum(seconds), abs=1e-3)
        buckets = {
            labels["le"]: value
            for (name, pairs), value in samples.items()
            if name == f"{duration}_bucket"
            for labels in [dict(pairs)]
            if (labels["task"], labels["queue"]) == (task, queue)
        }
        assert len(buckets) > 10 and "+Inf" in buckets, buckets
        for le, count in buckets.items():
            assert count == sum(1 for s in seconds if s <= float(le)), (task, le, seconds)
    # The slow record job ran over 0.3 s: at most the other one is within 0.25 s.
    record = {"task": "probe.record", "queue": "default"}
    assert (sample(samples, f"{duration}_bucket", **record, le="0.25") or 0) <= 1

    oldest = sample(samples, "conveyor_queue_oldest_seconds", queue="reports")
    assert oldest is not None
    assert 1.5 <= oldest <= scraped_at - before.timestamp() + 0.5, oldest
    assert sample(samples, "conveyor_queue_oldest_seconds", queue="default") == 0
    for part in ("tasks", "oldest"):
        assert sample(samples, "conveyor_scrape_error", part=part) == 0

    # Every line probe.says logged is a JSON object naming its job, attempt by attempt.
    lines = json_lines(worker.output())
    assert any(" ready." in line.get("message", "") for line in lines), "the worker's own lines"
    said = [line for line in lines if line.get("message", "").startswith("tm-says: attempt")]
    ways = ("via the task logger", "via a module logger", "via print")
    assert sorted(line["message"] for line in said) == sorted(
        f"tm-says: attempt {attempt} {way}" for attempt in (1, 2) for way in ways
    ), said
    for line in said:
        attempt = int(line["message"].split()[2])
        assert {k: line.get(k) for k in ("job_id", "task", "attempt", "queue", "worker")} == {
            "job_id": jobs["says"],
            "task": "probe.says",
            "attempt": attempt,
            "queue": "default",
            "worker": worker.hostname,
        }, line
        assert line["level"] in ("INFO", "WARNING") and line["time"]


@pytest.mark.parametrize(
    ("profile", "log_format", "json_lines_on"),
    [
        ("production", None, True),
        ("production", "text", False),
        ("development", None, False),
        ("test", None, False),
        ("development", "json", True),
    ],
)
def test_json_log_lines_are_on_by_default_in_production_only(
    monkeypatch: pytest.MonkeyPatch, profile: str, log_format: str | None, json_lines_on: bool
) -> None:
    monkeypatch.setenv("CONVEYOR_PROFILE", profile)
    monkeypatch.setenv("CONVEYOR_WEB__SECRET_KEY", "k" * 60)
    if log_format is None:
        monkeypatch.delenv("CONVEYOR_LOG__FORMAT", raising=False)
    else:
        monkeypatch.setenv("CONVEYOR_LOG__FORMAT", log_format)
    assert Settings().json_logs is json_lines_on
