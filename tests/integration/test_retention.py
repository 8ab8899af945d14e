"""The retention purges against the real database: exactly the rows past each cutoff go.

``maintenance.purge_finished_jobs`` deletes completed and cancelled jobs finished more
than ``LEDGER__RETENTION_DAYS`` ago, failed and dead ones past
``LEDGER__FAILED_RETENTION_DAYS``, each with its events; nothing unfinished, however old.
``maintenance.purge_audit_records`` deletes audit records made more than
``WEB__AUDIT_RETENTION_DAYS`` ago, ``maintenance.purge_schedule_fires`` fire records
written more than ``BEAT__FIRE_RETENTION_DAYS`` ago.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.db import engine
from app.web.housekeeping import purge_audit_records
from config.settings import get_settings
from tasks.maintenance import BATCH, purge_finished_jobs, purge_schedule_fires

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

INSERT_AUDIT = text("""
INSERT INTO conveyor_audit (at, actor, action, target)
VALUES (:at, 'user:alice', 'schedule.update', 'schedule:nightly')
RETURNING id
""")
INSERT_FIRE = text("""
INSERT INTO conveyor_schedule_fire (periodic_task_id, schedule_name, fire_time, fired_at,
    outcome, beat, detail)
VALUES (1, 'nightly', :fire_time, :fired_at, 'enqueued', 'beat@host', '')
RETURNING id
""")
#: Every table a purge of this module deletes from.
TABLES = "jobs, job_events, conveyor_audit, conveyor_schedule_fire"


@pytest.fixture(autouse=True)
def empty_tables() -> Iterator[None]:
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES}"))
    yield
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES}"))


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


def add_audit(made_ago: timedelta) -> int:
    """An audit record made ``made_ago`` ago; its id."""
    with engine().begin() as conn:
        return int(conn.execute(INSERT_AUDIT, {"at": datetime.now(UTC) - made_ago}).scalar_one())


def add_fire(written_ago: timedelta, slot_ago: timedelta | None = None) -> int:
    """A fire record written ``written_ago`` ago, for the slot ``slot_ago`` ago (the same
    by default; a catch-up fire is written after its slot); its id."""
    now = datetime.now(UTC)
    row = {"fired_at": now - written_ago, "fire_time": now - (slot_ago or written_ago)}
    with engine().begin() as conn:
        return int(conn.execute(INSERT_FIRE, row).scalar_one())


def purge_records() -> dict[str, int]:
    """Both record purges, as the nightly schedules run them; what each deleted."""
    return {**purge_audit_records.run(), **purge_schedule_fires.run()}


def remaining_records() -> tuple[set[int], set[int]]:
    """Ids of the audit records and of the fire records left."""
    with engine().connect() as conn:
        audit = {int(row[0]) for row in conn.execute(text("SELECT id FROM conveyor_audit"))}
        fires = {int(row[0]) for row in conn.execute(text("SELECT id FROM conveyor_schedule_fire"))}
    return audit, fires


def test_the_record_purge_deletes_exactly_the_audit_and_fire_records_past_their_cutoffs() -> None:
    settings = get_settings()
    audit_cutoff = timedelta(days=settings.web.audit_retention_days)
    fire_cutoff = timedelta(days=settings.beat.fire_retention_days)
    assert fire_cutoff < audit_cutoff, "the test needs two cutoffs"
    doomed_audit = {add_audit(audit_cutoff + MARGIN), add_audit(audit_cutoff * 2)}
    kept_audit = {
        add_audit(audit_cutoff - MARGIN),
        # Past the fire records' cutoff, not the audit's: each kind has its own.
        add_audit(fire_cutoff + MARGIN),
        add_audit(timedelta(hours=1)),
    }
    doomed_fires = {
        add_fire(fire_cutoff + MARGIN),
        add_fire(fire_cutoff * 3),
        add_fire(audit_cutoff + MARGIN),
    }
    kept_fires = {
        add_fire(fire_cutoff - MARGIN),
        add_fire(timedelta(hours=1)),
        # A catch-up fire written lately for a slot past the cutoff: a record is as old
        # as its writing.
        add_fire(timedelta(hours=1), slot_ago=fire_cutoff + MARGIN),
    }
    # Jobs are the other task's: none goes.
    job = add_job("completed", timedelta(days=settings.ledger.failed_retention_days * 2))

    deleted = purge_records()

    assert deleted == {"audit_records": 2, "schedule_fires": 3}
    audit, fires = remaining_records()
    assert audit == kept_audit, f"gone: {kept_audit - audit}, left: {audit & doomed_audit}"
    assert fires == kept_fires, f"gone: {kept_fires - fires}, left: {fires & doomed_fires}"
    assert remaining()[0] == {job}
    assert purge_records() == {"audit_records": 0, "schedule_fires": 0}


def test_the_record_purge_works_through_more_records_than_one_batch() -> None:
    settings = get_settings()
    now = datetime.now(UTC)
    n = 2 * BATCH + 7
    with engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conveyor_audit (at, actor, action, target) "
                "SELECT :at, 'user:alice', 'job.cancel', 'job:' || i FROM generate_series(1, :n) i"
            ),
            {"at": now - timedelta(days=settings.web.audit_retention_days) - MARGIN, "n": n},
        )
        old = now - timedelta(days=settings.beat.fire_retention_days) - MARGIN
        conn.execute(
            text(
                "INSERT INTO conveyor_schedule_fire (periodic_task_id, schedule_name, fire_time, "
                "fired_at, outcome, beat, detail) SELECT 1, 'nightly', "
                ":old - i * interval '1 minute', :old, 'enqueued', 'beat@host', '' "
                "FROM generate_series(1, :n) i"
            ),
            {"old": old, "n": n},
        )
    kept_audit = add_audit(timedelta(days=settings.web.audit_retention_days) - MARGIN)
    kept_fire = add_fire(timedelta(days=settings.beat.fire_retention_days) - MARGIN)

    assert purge_records() == {"audit_records": n, "schedule_fires": n}
    assert remaining_records() == ({kept_audit}, {kept_fire})
