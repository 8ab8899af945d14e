"""The retention purge against the real ledger: exactly the rows past each cutoff go.

``maintenance.purge_finished_jobs`` deletes completed and cancelled jobs finished more
than ``LEDGER__RETENTION_DAYS`` ago, failed and dead ones past
``LEDGER__FAILED_RETENTION_DAYS``, each with its events; nothing unfinished, however old.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.db import engine
from config.settings import get_settings
from tasks.maintenance import BATCH, purge_finished_jobs

#: How far on either side of a cutoff the rows sit: far above the time the test takes.
MARGIN = timedelta(seconds=30)

INSERT_JOB = text("""
INSERT INTO jobs (id, handler, queue, status, status_at, attempts, deliveries,
                  created_at, enqueued_at, started_at, finished_at)
VALUES (:id, 'demo.ping', 'default', :status, :status_at, 1, 1,
        :created_at, :created_at, :created_at, :finished_at)
""")
INSERT_EVENTS = text("""
INSERT INTO job_events (job_id, from_status, to_status, at, attempt)
VALUES (:id, NULL, 'queued', :created_at, 0), (:id, 'queued', :status, :status_at, 1)
""")


@pytest.fixture(autouse=True)
def empty_ledger() -> Iterator[None]:
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events"))
    yield
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events"))


def add_job(status: str, finished_ago: timedelta | None, age: timedelta | None = None) -> str:
    """A job in ``status`` with two events; finished ``finished_ago`` ago (None: unfinished,
    or a finished job whose ``finished_at`` the ledger lost, at ``age``)."""
    job_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    status_at = now - (finished_ago or age or timedelta(0))
    row = {
        "id": job_id,
        "status": status,
        "status_at": status_at,
        "created_at": status_at - timedelta(minutes=5),
        "finished_at": None if finished_ago is None else status_at,
    }
    with engine().begin() as conn:
        conn.execute(INSERT_JOB, row)
        conn.execute(INSERT_EVENTS, row)
    return job_id


def remaining() -> tuple[set[str], dict[str, int]]:
    """Ids of the jobs left, and how many events each id has left (orphans included)."""
    with engine().connect() as conn:
        jobs = {str(row[0]) for row in conn.execute(text("SELECT id FROM jobs"))}
        events = {
            str(job): int(count)
            for job, count in conn.execute(
                text("SELECT job_id, count(*) FROM job_events GROUP BY job_id")
            )
        }
    return jobs, events


def test_the_purge_deletes_exactly_the_jobs_past_each_cutoff_with_their_events() -> None:
    ledger = get_settings().ledger
    days = {
        "completed": ledger.retention_days,
        "cancelled": ledger.retention_days,
        "failed": ledger.failed_retention_days,
        "dead": ledger.failed_retention_days,
    }
    assert ledger.retention_days < ledger.failed_retention_days, "the test needs two cutoffs"
    doomed, kept = set(), set()
    for status, retention in days.items():
        cutoff = timedelta(days=retention)
        doomed.add(add_job(status, cutoff + MARGIN))
        kept.add(add_job(status, cutoff - MARGIN))
        kept.add(add_job(status, timedelta(hours=1)))
    # Past the shorter cutoff but not the longer: a failure is kept for its post-mortem.
    kept.add(add_job("dead", timedelta(days=ledger.retention_days) + MARGIN))
    kept.add(add_job("failed", timedelta(days=ledger.retention_days) + MARGIN))
    # Unfinished, however old: never purged.
    for status in ("scheduled", "queued", "running", "retrying"):
        kept.add(add_job(status, None, age=timedelta(days=ledger.failed_retention_days * 2)))

    deleted = purge_finished_jobs.run()

    assert deleted == {"completed_or_cancelled": 2, "failed_or_dead": 2}
    jobs, events = remaining()
    assert jobs == kept, f"gone: {kept - jobs}, left: {jobs & doomed}"
    assert set(events) == kept, "events go with their jobs, and only with them"
    assert all(count == 2 for count in events.values())
    assert purge_finished_jobs.run() == {"completed_or_cancelled": 0, "failed_or_dead": 0}


def test_the_purge_works_through_more_jobs_than_one_batch() -> None:
    cutoff = timedelta(days=get_settings().ledger.retention_days)
    old = datetime.now(UTC) - cutoff - MARGIN
    with engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, handler, queue, status, status_at, created_at, "
                "finished_at) SELECT gen_random_uuid(), 'demo.ping', 'default', 'completed', "
                ":old, :old, :old FROM generate_series(1, :n)"
            ),
            {"old": old, "n": 2 * BATCH + 7},
        )
        conn.execute(
            text(
                "INSERT INTO job_events (job_id, to_status, at) "
                "SELECT id, 'completed', finished_at FROM jobs"
            )
        )
    kept = add_job("completed", cutoff - MARGIN)

    assert purge_finished_jobs.run()["completed_or_cancelled"] == 2 * BATCH + 7
    jobs, events = remaining()
    assert jobs == {kept}
    assert set(events) == {kept}


def test_a_finished_job_that_lost_its_finished_at_is_purged_by_its_status_time() -> None:
    # A duplicate delivery of a finished job is recorded as that state again, with no
    # finished_at, and the ledger's upsert then clears the column (app/jobs/recorder.py):
    # such a job must still leave once its state is older than the cutoff.
    ledger = get_settings().ledger
    old = add_job("completed", None, age=timedelta(days=ledger.retention_days) + MARGIN)
    young = add_job("completed", None, age=timedelta(days=ledger.retention_days) - MARGIN)
    dead = add_job("dead", None, age=timedelta(days=ledger.failed_retention_days) + MARGIN)

    assert purge_finished_jobs.run() == {"completed_or_cancelled": 1, "failed_or_dead": 1}
    jobs, events = remaining()
    assert old not in jobs and dead not in jobs
    assert jobs == {young} and set(events) == {young}
