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


def test_a_cron_schedule_makes_a_recurring_job_that_update_and_delete_take_by_its_id() -> None:
    service = JobService()
    name = f"digest-{uuid.uuid4().hex[:8]}"
    job_id = service.enqueue("demo.ping", {"message": "cron"}, job_name=name, schedule="0 6 * * *")
    recurring = service.recurring(job_id)
    assert recurring is not None
    assert (recurring["name"], recurring["task"], recurring["cron"]) == (
        name,
        "demo.ping",
        "0 6 * * *",
    )
    assert recurring["kwargs"] == {"message": "cron"}
    assert service.enqueue("demo.ping", {}, job_name=name, schedule="0 6 * * *") == job_id, (
        "the same name again is the same recurring job"
    )
    with pytest.raises(JobNotFound):
        service.get(job_id)  # no run yet: the job is its schedule

    due = service.update_schedule(job_id, "*/30 * * * *")
    assert due == next_fire_times("*/30 * * * *", get_settings().timezone, 1)[0]
    assert service.recurring(job_id)["cron"] == "*/30 * * * *"  # type: ignore[index]
    with pytest.raises(InvalidSchedule, match="cron expression"):
        service.update_schedule(job_id, timedelta(minutes=5))

    service.delete(job_id)
    assert service.recurring(job_id) is None
    with pytest.raises(JobNotFound):
        service.delete(job_id)


def test_a_recurring_job_needs_a_name_and_a_valid_expression() -> None:
    service = JobService()
    with pytest.raises(InvalidSchedule, match="needs a job_name"):
        service.enqueue("demo.ping", {}, schedule="0 6 * * *")
    with pytest.raises(InvalidSchedule):
        service.enqueue("demo.ping", {}, job_name="bad-cron", schedule="61 * * * *")
    assert service.recurring(uuid.uuid4()) is None


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


def test_active_lists_unfinished_jobs_soonest_first_and_no_finished_one() -> None:
    service = JobService()
    later = service.enqueue("demo.ping", {}, schedule=timedelta(hours=2))
    sooner = service.enqueue("demo.ping", {}, schedule=timedelta(minutes=10))
    done = service.enqueue("demo.ping", {}, schedule=timedelta(hours=1))
    service.cancel(done)
    ours = [job["id"] for job in service.active() if job["id"] in {later, sooner, done}]
    assert ours == [sooner, later]
    for job_id in (later, sooner):
        service.cancel(job_id)
