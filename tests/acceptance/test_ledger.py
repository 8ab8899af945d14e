"""The job ledger: every transition recorded, deliveries capped, finished jobs never rerun."""

from __future__ import annotations

import uuid

import pytest
from celery import chain, group

from app.errors import InvalidPayload, JobNotFound, PayloadTooLarge, UnknownHandler
from app.jobs import lifecycle
from app.jobs.service import JobService
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance


def status_of(service: JobService, job_id: uuid.UUID | str) -> str | None:
    """The job's status in the ledger; None until its first batch is written."""
    try:
        return str(service.get(job_id)["status"])
    except JobNotFound:
        return None


def settled(
    service: JobService, job_id: uuid.UUID | str, status: str, timeout_s: float = 30
) -> None:
    """Wait until the ledger shows ``status`` for the job."""
    wait_for(
        lambda: status_of(service, job_id) == status, timeout_s, f"job {job_id} to be {status}"
    )


def test_every_transition_of_a_job_that_retries_twice_is_in_order(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    with Worker(broker.url, queues="default", concurrency=1):
        job_id = service.enqueue("probe.flaky", {"key": "ledger-flaky", "failures": 2})
        settled(service, job_id, "completed")
    history = service.history(job_id)
    assert [(e["from_status"], e["to_status"], e["attempt"]) for e in history] == [
        (None, "queued", 0),
        ("queued", "running", 1),
        ("running", "retrying", 1),
        ("retrying", "running", 2),
        ("running", "retrying", 2),
        ("retrying", "running", 3),
        ("running", "completed", 3),
    ]
    assert history[2]["detail"] == "TransientError: ledger-flaky: attempt 1 failed on purpose"
    job = service.get(job_id)
    assert job["attempts"] == 3 and job["result"] == 3
    assert job["started_at"] <= job["finished_at"]
    assert effects.count("ledger-flaky") == 3


def test_a_job_failing_for_good_ends_dead_and_requeue_runs_it_from_its_payload(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    effects.flag("ledger-broken", on=True)
    with Worker(broker.url, queues="default", concurrency=1):
        job_id = service.enqueue("probe.broken", {"key": "ledger-broken"})
        settled(service, job_id, "dead")
        assert service.get(job_id)["last_error"] == "TransientError: ledger-broken is broken"
        assert [job["id"] for job in service.failed()] == [job_id]
        effects.flag("ledger-broken", on=False)
        assert service.requeue(job_id) == job_id
        settled(service, job_id, "completed")
    statuses = [event["to_status"] for event in service.history(job_id)]
    assert statuses[-4:] == ["dead", "queued", "running", "completed"]
    assert effects.count("ledger-broken", "done") == 1


def test_a_task_that_kills_its_worker_is_capped_and_dead_while_others_complete(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    cap = {"CONVEYOR_LEDGER__MAX_REDELIVERIES": "2"}
    with Worker(broker.url, queues="default", concurrency=2, env=cap):
        doomed = service.enqueue("probe.suicide", {"key": "doomed"})
        normal = [service.enqueue("probe.record", {"key": f"n{index:03d}"}) for index in range(100)]
        settled(service, doomed, "dead", timeout_s=90)
        wait_for(lambda: len(effects.rows("n", "done")) == 100, 90, "the 100 normal jobs")
    assert effects.count("doomed") == 3, "one delivery plus two redeliveries, then dead"
    assert "over the cap of 2 redeliveries" in service.get(doomed)["last_error"]
    wait_for(
        lambda: all(status_of(service, job_id) == "completed" for job_id in normal),
        10,
        "the ledger to show the 100 normal jobs completed",
    )
    assert sorted(row[0] for row in effects.rows("n", "start")) == [f"n{i:03d}" for i in range(100)]


def test_a_completed_job_delivered_again_is_not_run_again(broker: Broker, effects: Effects) -> None:
    service = JobService()
    with Worker(broker.url, queues="default", concurrency=1):
        job_id = service.enqueue("probe.record", {"key": "once"})
        settled(service, job_id, "completed")
    # The same job published again, as a duplicated publish would bring it, and the
    # producer's ledger write done before any worker can meet the message.
    probe_tasks.record.apply_async(kwargs={"key": "once"}, task_id=str(job_id))
    assert lifecycle.recorder().flush(5)
    assert status_of(service, job_id) == "completed", "a publish does not reopen a finished job"
    with Worker(broker.url, queues="default", concurrency=1):
        wait_for(
            lambda: any(
                "acknowledged, not run" in (e["detail"] or "") for e in service.history(job_id)
            ),
            30,
            "the duplicate delivery to be acknowledged",
        )
    assert effects.count("once") == 1
    assert status_of(service, job_id) == "completed"


def test_duplicate_idempotency_keys_and_active_names_return_one_job(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    key, name = f"order-{uuid.uuid4()}", f"export-{uuid.uuid4()}"
    first = service.enqueue("probe.record", {"key": "idem"}, idempotency_key=key)
    again = service.enqueue("probe.record", {"key": "idem"}, idempotency_key=key)
    named = service.enqueue("probe.record", {"key": "named"}, job_name=name)
    named_again = service.enqueue("probe.record", {"key": "named"}, job_name=name)
    assert first == again and named == named_again
    with Worker(broker.url, queues="default", concurrency=1):
        settled(service, first, "completed")
        settled(service, named, "completed")
    assert effects.count("idem") == 1 and effects.count("named") == 1
    assert service.get_by_name(name)["id"] == named


def test_a_cancelled_queued_job_never_runs(broker: Broker, effects: Effects) -> None:
    service = JobService()
    job_id = service.enqueue("probe.record", {"key": "cancelled"})
    service.cancel(job_id)
    with Worker(broker.url, queues="default", concurrency=1):
        sentinel = service.enqueue("probe.record", {"key": "after-cancel"})
        settled(service, sentinel, "completed")
    assert effects.count("cancelled") == 0
    assert status_of(service, job_id) == "cancelled"


def test_bad_input_to_enqueue_names_what_was_wrong_and_publishes_nothing(broker: Broker) -> None:
    service = JobService()
    before = service.list(limit=1000)[0]
    with pytest.raises(UnknownHandler) as unknown:
        service.enqueue("emails.sned", {})
    assert "'emails.sned'" in str(unknown.value) and "emails.send" in str(unknown.value)
    with pytest.raises(InvalidPayload) as invalid:
        service.enqueue("emails.send", {"to": ["not-an-address"], "subject": "", "body": "x"})
    assert "to.0:" in str(invalid.value) and "subject:" in str(invalid.value)
    with pytest.raises(PayloadTooLarge) as large:
        service.enqueue("probe.record", {"key": "x" * 2_000_000})
    assert "over the limit of 1048576 bytes" in str(large.value)
    assert service.list(limit=1000)[0] == before, "nothing was recorded"


def test_cancelling_a_running_job_with_terminate_stops_it_for_good(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    with Worker(broker.url, queues="default", concurrency=1):
        job_id = service.enqueue("probe.record", {"key": "stopped", "sleep_s": 20})
        settled(service, job_id, "running")
        service.cancel(job_id, terminate=True)
        sentinel = service.enqueue("probe.record", {"key": "after-stop"})
        settled(service, sentinel, "completed")
    assert effects.count("stopped", "done") == 0, "it was stopped, not finished"
    assert effects.count("stopped") == 1, "and never started again"
    assert status_of(service, job_id) == "cancelled"


def test_canvas_members_are_in_the_ledger_too(broker: Broker, effects: Effects) -> None:
    service = JobService()
    with Worker(broker.url, queues="default", concurrency=2):
        result = chain(
            probe_tasks.record.si("canvas-first"),
            group(probe_tasks.record.si("canvas-a"), probe_tasks.record.si("canvas-b")),
        ).delay()
        wait_for(lambda: len(effects.rows("canvas", "done")) == 3, 30, "the three members")
        first = result.parent.id if result.parent is not None else None
        members = [first, *(child.id for child in result.results)]
        wait_for(
            lambda: all(status_of(service, member) == "completed" for member in members),
            10,
            "the ledger to show every member completed",
        )
    for member in members:
        statuses = [event["to_status"] for event in service.history(member)]
        assert statuses == ["queued", "running", "completed"], (member, statuses)


def test_a_task_opts_out_of_one_guarantee_by_name(broker: Broker, effects: Effects) -> None:
    service = JobService()
    with Worker(broker.url, queues="default", concurrency=1):
        failing = probe_tasks.fails_plainly.delay("plainly")
        settled(service, failing.id, "failed")
        job_id = service.enqueue("probe.unclaimed", {"key": "unclaimed"})
        settled(service, job_id, "completed")
        # The same job delivered again: with no claim, nothing stops it running.
        probe_tasks.unclaimed.apply_async(kwargs={"key": "unclaimed"}, task_id=str(job_id))
        wait_for(lambda: effects.count("unclaimed") == 2, 30, "the duplicate to run")
    assert service.get(failing.id)["last_error"] == "PermanentError: plainly fails"
    assert effects.count("plainly") == 1
