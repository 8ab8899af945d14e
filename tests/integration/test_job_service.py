"""JobService against the real ledger: schedules, deletion, and refusals that name the input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.errors import InvalidSchedule, InvalidTransition, JobNameTaken, JobNotFound
from app.jobs.models import JobStatus
from app.jobs.service import JobService
from app.jobs.store import JobStore
from app.schedule import next_fire_times
from config.settings import get_settings


def test_a_scheduled_job_can_be_moved_and_its_move_is_in_its_history() -> None:
    service = JobService()
    job_id = service.enqueue("demo.ping", {"message": "later"}, schedule=timedelta(hours=1))
    new_due = datetime.now(UTC) + timedelta(hours=2)
    assert service.update_schedule(job_id, new_due) == new_due
    job = service.get(job_id)
    assert job["status"] == "scheduled" and job["due_at"] == new_due
    assert job["release_at"] == new_due
    assert service.history(job_id)[-1]["detail"] == f"rescheduled to {new_due.isoformat()}"


def test_only_a_finished_job_can_be_deleted() -> None:
    service = JobService()
    job_id = service.enqueue("demo.ping", {}, schedule=timedelta(hours=1))
    with pytest.raises(InvalidTransition, match="is scheduled: it cannot be deleted"):
        service.delete(job_id)
    service.cancel(job_id)
    with pytest.raises(InvalidTransition, match="is cancelled: it cannot be rescheduled"):
        service.update_schedule(job_id, timedelta(hours=3))
    service.delete(job_id)
    with pytest.raises(JobNotFound, match=str(job_id)):
        service.get(job_id)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("0 0 30 2 *", "it can never fire"),
        ("61 * * * *", "minute 61 out of range 0-59"),
        ("@fortnightly", "unknown alias"),
        (datetime(2030, 1, 1, 6, 0), "give a time zone"),
        (timedelta(seconds=-5), "a delay cannot be negative"),
        (42, "use None or '@once'"),
    ],
)
def test_a_schedule_it_cannot_honour_is_refused_naming_it(schedule: object, reason: str) -> None:
    service = JobService()
    before = service.list(limit=1000)[0]
    with pytest.raises(InvalidSchedule) as refused:
        service.enqueue("demo.ping", {}, schedule=schedule)  # type: ignore[arg-type]
    assert repr(schedule) in str(refused.value) and reason in str(refused.value)
    assert service.list(limit=1000)[0] == before, "nothing was recorded"


def test_a_cron_schedule_runs_the_job_once_at_its_next_fire_time() -> None:
    service = JobService()
    job_id = service.enqueue("demo.ping", {"message": "cron"}, schedule="0 6 * * MON-FRI")
    job = service.get(job_id)
    expected = next_fire_times("0 6 * * MON-FRI", get_settings().timezone, 1)[0]
    assert job["status"] == "scheduled" and job["schedule"] == "0 6 * * MON-FRI"
    assert job["due_at"] == expected and job["release_at"] == expected
    service.cancel(job_id)


def test_a_requeue_into_a_name_another_unfinished_job_holds_is_refused_naming_it() -> None:
    service = JobService()
    name = f"nightly-{uuid.uuid4().hex[:8]}"
    first = service.enqueue("demo.ping", {}, job_name=name, schedule=timedelta(hours=1))
    service.cancel(first)
    second = service.enqueue("demo.ping", {}, job_name=name, schedule=timedelta(hours=1))
    assert second != first
    with pytest.raises(JobNameTaken, match=f"another unfinished job is named {name!r}"):
        service.requeue(first)
    assert service.get(first)["status"] == "cancelled", "the refused requeue changed nothing"
    service.cancel(second)


def test_a_requeue_of_a_waiting_run_while_another_waits_for_its_name_is_refused() -> None:
    service = JobService()
    name = f"schedule:{uuid.uuid4().hex[:8]}"

    def waiting() -> uuid.UUID:
        job_id, created = JobStore().create(
            {
                "id": uuid.uuid4(),
                "handler": "demo.ping",
                "queue": "default",
                "waits_for": name,
                "status": JobStatus.SCHEDULED,
                "enqueued_at": None,
            }
        )
        assert created
        return job_id

    first = waiting()
    service.cancel(first)
    second = waiting()
    with pytest.raises(JobNameTaken, match=f"another unfinished job already waits for {name!r}"):
        service.requeue(first)
    assert service.get(first)["status"] == "cancelled"
    service.cancel(second)
