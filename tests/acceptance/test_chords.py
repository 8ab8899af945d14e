"""Chords on the ledger backend: one callback with its members' results, a failing member
fails the chord in bounded time, and a PostgreSQL outage mid-chord still ends in one callback.

Conveyor's result backend (``LedgerBackend``) has no native join, so Celery polls the
members with ``celery.chord_unlock`` (``max_retries=None``: it retries until they are
ready, celery#2725). Callbacks are counted by their effect rows, never their results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from celery import chord

from app.celery import app
from app.db import engine
from app.embedded import EmbeddedPostgres, free_port
from app.errors import JobNotFound
from app.jobs.service import JobService
from app.jobs.store import JobStore
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import ROOT, Worker
from tests.servers import Broker, database_url, use_broker

pytestmark = pytest.mark.acceptance

UNLOCK = "celery.chord_unlock"


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def chord_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each broker in turn, for every test of this module."""
    yield from use_broker(request.param)


@pytest.fixture(scope="module")
def worker(chord_broker: Broker) -> Iterator[Worker]:
    """One worker per broker for the tests on the run's own PostgreSQL."""
    with Worker(chord_broker.url, queues="default", concurrency=3) as running:
        yield running


def callbacks(effects: Effects, key: str) -> list[list[str]]:
    """The results each execution of the callback ``key`` received."""
    return [
        json.loads(phase.removeprefix("callback "))
        for _key, phase, *_ in effects.rows(key)
        if _key == key and phase.startswith("callback ")
    ]


def status_of(service: JobService, job_id: str) -> str | None:
    """The job's status in the ledger; None while it has no row."""
    try:
        return str(service.get(job_id)["status"])
    except JobNotFound:
        return None


def unlock_jobs(service: JobService) -> list[dict[str, object]]:
    """Every ``celery.chord_unlock`` job in the ledger."""
    return service.list(handler=UNLOCK, limit=100)[0]


#: celery.chord_unlock polls a chord's members once a second with ``max_retries=None``
#: (for ever), but ConveyorTask's ``from_config`` fills every ``max_retries`` left None
#: with ``CONVEYOR_WORKER__MAX_RETRIES`` (5) when the app binds it (app/jobs/task.py):
#: after five polls chord_unlock gives up and fails the chord.


def test_a_chords_callback_runs_once_with_every_members_result(
    worker: Worker, effects: Effects
) -> None:
    keys = [f"member{index}" for index in range(5)]
    result = chord(probe_tasks.record.s(key, 0.5) for key in keys)(
        probe_tasks.collect.s(key="joined")
    )
    assert result.get(timeout=60) == keys
    time.sleep(2)  # room for a second callback to show itself
    assert callbacks(effects, "joined") == [keys], "one callback, with the results in order"
    assert all(effects.count(key, "done") == 1 for key in keys), effects.rows("member")
    service = JobService()
    assert service.get(result.id)["status"] == "completed"
    unlocks = unlock_jobs(service)
    assert [job["status"] for job in unlocks] == ["completed"], unlocks


def test_a_chord_whose_members_take_longer_than_five_polls_still_calls_back_once(
    worker: Worker, effects: Effects
) -> None:
    service = JobService()
    header = [probe_tasks.record.s("slow", 8.0), probe_tasks.record.s("quick")]
    result = chord(header)(probe_tasks.collect.s(key="patient"))
    wait_for(lambda: effects.count("slow", "done") == 1, 30, "the slow member")
    wait_for(
        lambda: callbacks(effects, "patient") or status_of(service, result.id) == "failed",
        15,
        "the callback, or the chord's failure",
    )
    time.sleep(2)  # room for a second callback to show itself
    assert status_of(service, result.id) == "completed", service.get(result.id)["last_error"]
    assert callbacks(effects, "patient") == [["slow", "quick"]]
    assert [job["status"] for job in unlock_jobs(service)] == ["completed"]


def test_a_failing_member_fails_the_chord_in_bounded_time_and_unlock_stops(
    worker: Worker, effects: Effects
) -> None:
    service = JobService()
    header = [
        probe_tasks.record.s("fine0"),
        probe_tasks.rejects.s("doomed"),
        probe_tasks.record.s("fine1"),
    ]
    result = chord(header)(probe_tasks.collect.s(key="never"))
    doomed_id = result.parent.results[1].id
    started = time.monotonic()
    wait_for(
        lambda: app.AsyncResult(result.id).state == "FAILURE",
        60,
        "the chord's result to say it failed",
    )
    failed_in = time.monotonic() - started
    job = service.get(result.id)
    assert job["status"] in ("failed", "dead"), job
    assert "ChordError" in (job["last_error"] or ""), job["last_error"]
    assert "doomed can never succeed" in job["last_error"], "the error is the member's"
    assert service.get(doomed_id)["status"] == "dead"
    # chord_unlock has stopped: finished, and not one attempt more a while later.
    wait_for(
        lambda: [j["status"] for j in unlock_jobs(service)] == ["completed"],
        10,
        "chord_unlock to finish",
    )
    attempts = unlock_jobs(service)[0]["attempts"]
    time.sleep(5)
    assert unlock_jobs(service)[0]["attempts"] == attempts, "chord_unlock still retries"
    assert callbacks(effects, "never") == [], "no callback after a failed member"
    assert failed_in < 60


#: The outage test's chord goes to a queue of its own: the module's worker, on the
#: run's PostgreSQL, must not take part (chord_unlock follows the callback's queue).
OUTAGE_QUEUE = "reports"
#: ``max_retries`` to pass chord.apply_async, e.g. ``1000``: a workaround for UNLOCK_GIVES_UP.
OUTAGE_OPTIONS: dict[str, object] = {}

PRODUCER = """
import json, sys
from celery import chord
import tests.acceptance.probe_tasks as probe
queue, options = sys.argv[1], json.loads(sys.argv[2])
result = chord(
    [probe.record.s(f"outage{i}", 2.0).set(queue=queue) for i in range(6)],
    probe.collect.s(key="outage").set(queue=queue),
).apply_async(**options)
print(json.dumps({"callback": result.id, "members": [r.id for r in result.parent.results]}))
"""


def test_postgres_down_20s_mid_chord_still_ends_in_exactly_one_callback(
    chord_broker: Broker, effects: Effects
) -> None:
    # The database this test stops is its own; effect rows stay in the run's.
    server = EmbeddedPostgres(ROOT / "var" / f"test-pg-{uuid.uuid4().hex[:8]}", free_port())
    server.start()
    server.create_database("conveyor")
    env = {
        **os.environ,
        "CONVEYOR_BROKER__URL": chord_broker.url,
        "CONVEYOR_DATABASE__URL": server.url("conveyor"),
        "CONVEYOR_TEST_EFFECTS_URL": database_url(),
    }
    own_ledger = JobService(store=JobStore(engine(server.url("conveyor"))))

    def ledger(job_id: str) -> tuple[str, str | None]:
        """(status, last_error) of a job in the test's own ledger; ("", None) without a row."""
        try:
            job = own_ledger.get(job_id)
        except JobNotFound:
            return "", None
        return job["status"], job["last_error"]

    try:
        subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True)
        with Worker(chord_broker.url, queues=OUTAGE_QUEUE, concurrency=2, env=env):
            produced = subprocess.run(
                [sys.executable, "-c", PRODUCER, OUTAGE_QUEUE, json.dumps(OUTAGE_OPTIONS)],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            callback_id = json.loads(produced.stdout.strip().splitlines()[-1])["callback"]
            wait_for(lambda: len(effects.rows("outage", "start")) >= 2, 30, "members to start")
            done_before = len(effects.rows("outage", "done"))
            server.stop()
            time.sleep(20)
            server.start()
            wait_for(
                lambda: ledger(callback_id)[0] in ("completed", "failed", "dead"),
                60,
                "the ledger to show the callback's end",
            )
            time.sleep(3)  # room for a second callback to show itself
            unlocks = [
                (job["status"], job["attempts"]) for job in own_ledger.list(handler=UNLOCK)[0]
            ]
        assert ledger(callback_id)[0] == "completed", ledger(callback_id)
        keys = [f"outage{index}" for index in range(6)]
        assert callbacks(effects, "outage") == [keys], "exactly one callback, every result"
        assert all(effects.count(key, "done") == 1 for key in keys), effects.rows("outage")
        assert done_before < 6, "PostgreSQL stopped after every member had finished"
        assert [status for status, _attempts in unlocks] == ["completed"], unlocks
        assert unlocks[0][1] > 10, "chord_unlock did not poll through the outage"
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        server.log.unlink(missing_ok=True)
