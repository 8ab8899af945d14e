"""The delivery gate on the suite's Redis, and the claims made on it, against the real ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from app.db import engine
from app.embedded import EmbeddedRedis, free_port
from app.errors import JobNotFound
from app.jobs.claim import Claims
from app.jobs.gate import UNFLUSHED, Holder, gate, job_key, lock_key
from app.jobs.heartbeat import reconcile
from app.jobs.recorder import Transition
from app.jobs.service import JobService
from app.jobs.verdict import Verdict

PAYLOAD = {"args": [], "kwargs": {}}


@pytest.fixture(autouse=True)
def empty_ledger() -> Iterator[None]:
    """An empty ledger, and no outcome left waiting in the gate."""
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events, workers"))
    gate.client().delete(UNFLUSHED)
    yield
    gate.client().delete(UNFLUSHED)


@pytest.fixture
def make_claims() -> Iterator[Callable[[], Claims]]:
    """Claims as separate processes would make them, each closed afterwards."""
    made: list[Claims] = []

    def make() -> Claims:
        made.append(Claims())
        return made[-1]

    yield make
    for claims in made:
        claims.close()


def dead_pid() -> int:
    """The pid of a process of this machine that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def job_id() -> str:
    return str(uuid.uuid4())


def claim(claims: Claims, job: str, *, attempt: int = 1, **kwargs: object) -> Verdict:
    kwargs.setdefault("sent_at", time.time())
    return claims.claim(job, "probe.record", "default", PAYLOAD, attempt, **kwargs).verdict  # type: ignore[arg-type]


def ledger_row(job: str) -> dict[str, object] | None:
    try:
        return JobService().get(job)
    except JobNotFound:
        return None


def events(job: str) -> list[tuple[str, str | None]]:
    return [(event["to_status"], event["detail"]) for event in JobService().history(job)]


def test_one_delivery_holds_a_job_and_its_outcome_ends_it_for_every_later_one(
    make_claims: Callable[[], Claims],
) -> None:
    first, second, job = make_claims(), make_claims(), job_id()
    assert claim(first, job, node="w1") is Verdict.RUN
    # Another live process of this machine: its duplicate waits instead of running.
    other = Holder("w2", Holder.me(None).host, 1)  # pid 1 is alive everywhere
    said = gate.claim(job, other, 60)
    assert said.verdict == "busy" and said.holder == Holder.me("w1")
    assert 0 < said.lease_left_s <= 3660

    done = Transition(job_id=job, to_status="completed", from_status="running", attempt=1)
    first.settle(done)
    assert done.gated and not first.holds(job)
    assert gate.client().get(lock_key(job)) is None, "the outcome let go of the job"
    assert gate.client().zscore(UNFLUSHED, job) is not None, "waiting for PostgreSQL"

    assert claim(second, job, node="w2") is Verdict.FINISHED
    gate.flushed([job])
    assert gate.client().zscore(UNFLUSHED, job) is None
    assert gate.client().hget(job_key(job), "o") is None
    assert gate.client().hget(job_key(job), "s") == b"completed", "the status stays"


def test_a_lock_left_by_a_dead_process_of_this_machine_is_taken_over(
    make_claims: Callable[[], Claims],
) -> None:
    job = job_id()
    ghost = Holder("ghost", Holder.me(None).host, dead_pid())
    assert gate.claim(job, ghost, 3600).verdict == "locked"
    claims = make_claims()
    assert claim(claims, job, node="w1") is Verdict.RUN
    assert gate.client().get(lock_key(job)) == str(Holder.me("w1")).encode()
    assert gate.client().hget(job_key(job), "d") == b"2", "both deliveries counted"
    claims.release(job)


def test_an_outcome_the_gate_refused_is_found_in_the_ledger_by_the_next_delivery(
    make_claims: Callable[[], Claims],
) -> None:
    from app.jobs import lifecycle

    first, job = make_claims(), job_id()
    assert claim(first, job, node="w1") is Verdict.RUN
    # The gate refused the outcome (a full Redis): its process wrote it to the ledger
    # alone, and its lock stayed. The message comes back (its ack was refused too).
    recorder = lifecycle.recorder()
    recorder.record(Transition(job, "running", "queued", attempt=1, worker="w1"))
    recorder.record(Transition(job, "completed", "running", attempt=1, worker="w1"))
    assert recorder.drain()
    assert gate.client().hget(job_key(job), "s") is None, "the gate does not know it"
    # The next delivery takes the lock over from the holder (this very process, which
    # runs one delivery at a time) and must not run the job again.
    assert claim(make_claims(), job, node="w2", redelivered=True) is Verdict.FINISHED
    assert gate.client().hget(job_key(job), "s") == b"completed", "now the gate knows"


def test_deliveries_over_the_cap_are_refused_and_each_attempt_may_be_delivered_anew(
    monkeypatch: pytest.MonkeyPatch, make_claims: Callable[[], Claims]
) -> None:
    monkeypatch.setenv("CONVEYOR_LEDGER__MAX_REDELIVERIES", "1")
    from config.settings import get_settings

    get_settings.cache_clear()
    try:
        claims, job = make_claims(), job_id()
        assert claim(claims, job) is Verdict.RUN
        claims.release(job)
        assert claim(claims, job) is Verdict.RUN, "one redelivery is allowed"
        claims.release(job)
        assert claim(claims, job) is Verdict.OVER_CAP
        claims.release(job)
        assert claim(claims, job, attempt=3) is Verdict.RUN, "a retry is a new attempt"
        claims.release(job)
    finally:
        get_settings.cache_clear()


def test_a_delivery_the_gate_may_have_forgotten_is_checked_in_the_ledger(
    make_claims: Callable[[], Claims],
) -> None:
    claims, job = make_claims(), job_id()
    with engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, handler, queue, status, status_at, deliveries, created_at) "
                "VALUES (:id, 'probe.record', 'default', 'completed', now(), 1, now())"
            ),
            {"id": job},
        )
    # Redelivered, and unknown to the gate (as after Redis lost its data).
    assert claim(claims, job, redelivered=True) is Verdict.FINISHED
    assert gate.client().hget(job_key(job), "s") == b"completed"
    assert gate.client().get(lock_key(job)) is None
    # A message older than the gate's memory is checked too.
    other = job_id()
    assert claim(claims, other, sent_at=time.time() - 10 * 86400) is Verdict.RUN
    assert gate.client().hget(job_key(other), "d") == b"1"
    claims.release(other)


def test_outcomes_of_a_dead_process_are_written_once_by_reconcile() -> None:
    job, ghost = job_id(), Holder("ghost", Holder.me(None).host, dead_pid())
    assert gate.claim(job, ghost, 60).verdict == "locked"
    finished = datetime.now(UTC)
    outcome = Transition(
        job_id=job,
        to_status="completed",
        from_status="running",
        attempt=1,
        worker="ghost",
        job={"result": {"rows": 3}, "finished_at": finished, "handler": "probe.record"},
    )
    gate.finish(job, ghost, "completed", outcome.to_json())
    alive = Holder("alive", Holder.me(None).host, 1)
    other = job_id()
    gate.finish(other, alive, "completed", {**outcome.to_json(), "job_id": other})

    assert reconcile(Holder.dead_here, 0) == 1, "only the dead process's outcome"
    row = ledger_row(job)
    assert row is not None
    assert (row["status"], row["result"]) == ("completed", {"rows": 3})
    assert row["finished_at"] == finished
    assert [status for status, _ in events(job)] == ["completed"]
    assert "its worker process was gone" in (events(job)[0][1] or "")
    assert ledger_row(other) is None, "a live process writes its own"
    assert gate.client().zscore(UNFLUSHED, job) is None
    assert gate.client().zscore(UNFLUSHED, other) is not None

    # Taken for lost again (say its writer's own batch had gone through): no second event.
    gate.give_back(job)
    again = {"job_id": job, "to_status": "completed", "at": finished.isoformat(), "attempt": 1}
    gate.client().hset(job_key(job), "o", json.dumps(again))
    assert reconcile(Holder.dead_here, 0) == 1
    assert [status for status, _ in events(job)] == ["completed"]


@pytest.fixture
def gate_away(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The gate pointed at a port where no Redis listens; yields that URL."""
    import socket

    with socket.socket() as probe:  # a free port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setattr(gate, "_url", url)
    monkeypatch.setattr(gate, "_client", None)
    yield url
    gate._client = None  # the real gate's client is made again on next use


def test_with_the_gate_away_claims_are_made_in_the_ledger(
    gate_away: str, make_claims: Callable[[], Claims]
) -> None:
    from app.jobs import lifecycle

    first, second, job = make_claims(), make_claims(), job_id()
    assert claim(first, job) is Verdict.RUN
    assert first.holds(job)
    assert claim(second, job) is Verdict.BUSY, "PostgreSQL's advisory lock holds it"
    done = Transition(job_id=job, to_status="completed", from_status="running", attempt=1)
    first.settle(done)
    assert not done.gated
    recorder = lifecycle.recorder()
    recorder.record(done)
    first.finish(job, recorder)  # written before the release, as the ack needs
    assert not first.holds(job)
    row = ledger_row(job)
    assert row is not None and row["status"] == "completed"
    assert claim(second, job) is Verdict.FINISHED


def test_cancel_and_requeue_refuse_naming_the_gate_when_it_is_away(gate_away: str) -> None:
    from app.errors import GateUnavailable
    from app.jobs.service import JobService

    service = JobService()
    job = service.enqueue("demo.ping", {}, schedule=timedelta(hours=1))
    with pytest.raises(GateUnavailable, match=rf"cannot cancel job {job}: .*{gate_away}"):
        service.cancel(job)
    assert service.get(job)["status"] == "scheduled", "nothing changed"
    dead = job_id()
    with engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, handler, queue, status, status_at, created_at) "
                "VALUES (:id, 'demo.ping', 'default', 'dead', now(), now())"
            ),
            {"id": dead},
        )
    with pytest.raises(GateUnavailable, match=rf"cannot requeue job {dead}: .*{gate_away}"):
        service.requeue(dead)
    assert service.get(dead)["status"] == "dead", "nothing changed, nothing published"


@pytest.fixture
def own_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The gate on a Redis this test starts (faults go there); yields a client of it."""
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    server.start()
    monkeypatch.setattr(gate, "_url", server.url)
    monkeypatch.setattr(gate, "_client", None)
    admin = redis.Redis.from_url(server.url)
    try:
        yield admin
    finally:
        admin.close()
        gate._client = None  # the suite's gate is made again on next use
        server.stop()


def test_claims_survive_a_flushed_script_cache_and_a_dropped_connection(
    own_gate: redis.Redis, make_claims: Callable[[], Claims]
) -> None:
    """The gate's scripts run on their own connection: both faults are recovered.

    A claim recovers within the call. An outcome is sent without waiting for its
    reply, so it is recovered by this process's next gate call, which confirms it.
    """
    admin = own_gate
    claims, job, second = make_claims(), job_id(), job_id()
    assert claim(claims, job) is Verdict.RUN  # a new server: the script is sent whole
    admin.script_flush()
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # the gate's socket
    done = Transition(job_id=job, to_status="completed", from_status="running", attempt=1)
    claims.settle(done)
    assert done.gated, "the outcome left for the gate"
    assert admin.hget(job_key(job), "s") is None, "sent on a dropped connection: not run"
    # The next claim confirms it first: reconnects, sends it again, whole.
    assert claim(claims, second) is Verdict.RUN
    assert admin.hget(job_key(job), "s") == b"completed"
    assert claim(make_claims(), job) is Verdict.FINISHED

    # An outcome Redis refused (it lost its scripts) is sent again whole.
    admin.script_flush()
    claims.settle(
        Transition(job_id=second, to_status="completed", from_status="running", attempt=1)
    )
    assert admin.hget(job_key(second), "s") is None, "refused: not run yet"
    gate.confirm()
    assert admin.hget(job_key(second), "s") == b"completed"
    assert admin.get(lock_key(second)) is None


def test_an_outcome_is_confirmed_before_its_written_copy_is_cleared(
    own_gate: redis.Redis, make_claims: Callable[[], Claims]
) -> None:
    """PostgreSQL's batch clears the gate's copy only after Redis ran the outcome.

    Otherwise an outcome Redis runs late would be listed again as unwritten, and
    written a second time once its process is gone.
    """
    admin = own_gate
    claims, job = make_claims(), job_id()
    assert claim(claims, job) is Verdict.RUN
    admin.script_flush()  # the outcome's first send is refused
    done = Transition(job_id=job, to_status="completed", from_status="running", attempt=1)
    claims.settle(done)
    assert done.gated
    gate.flushed([job])  # what the recorder does once PostgreSQL has the batch
    assert admin.hget(job_key(job), "s") == b"completed"
    assert admin.hget(job_key(job), "o") is None, "the written copy is cleared"
    assert admin.zscore(UNFLUSHED, job) is None


@pytest.mark.parametrize(
    ("attempt", "late"),
    [
        # Another host's retry of attempt 2, its clock a little ahead, written later.
        (3, ("retrying", "running", 2, "500")),
        # A second copy of the message, claimed while the first still held the job.
        (1, ("running", "running", 1, "dup")),
        # The worker's main process cancelled it as its broker connection dropped.
        (1, ("retrying", "running", 0, "cancelled by Celery")),
    ],
    ids=[
        "an earlier attempt's retry",
        "a duplicate that found it running",
        "a cancel on connection loss",
    ],
)
def test_news_written_late_never_reopens_a_finished_job(
    attempt: int, late: tuple[str, str, int, str]
) -> None:
    from app.jobs import lifecycle

    job, recorder = job_id(), lifecycle.recorder()
    now = datetime.now(UTC)
    recorder.record(Transition(job, "running", "queued", at=now, attempt=attempt))
    finished_at = now + timedelta(milliseconds=5)
    recorder.record(Transition(job, "completed", "running", at=finished_at, attempt=attempt))
    assert recorder.drain()
    to_status, from_status, late_attempt, detail = late
    at = now + timedelta(milliseconds=50)
    recorder.record(
        Transition(job, to_status, from_status, at=at, attempt=late_attempt, detail=detail)
    )
    assert recorder.drain()
    row = ledger_row(job)
    assert row is not None
    assert (row["status"], row["attempts"]) == ("completed", attempt)
    assert (to_status, detail) in events(job), "the late news is in the history all the same"


def test_what_workers_hold_counts_only_reports_within_the_window() -> None:
    gate.client().delete("conveyor:gate:held")
    gate.report_held("live@host", ["a", "b"])
    gate.report_held("gone@host", ["c"])
    stale = json.dumps({"at": time.time() - 120, "jobs": ["c"]})
    gate.client().hset("conveyor:gate:held", "gone@host", stale)
    assert gate.held(60) == {"a", "b"}
    assert gate.client().hkeys("conveyor:gate:held") == [b"live@host"], "the stale report went"
    gate.forget_held("live@host")
    assert gate.held(60) == set()
