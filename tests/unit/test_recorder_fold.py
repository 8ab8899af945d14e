"""The recorder's fold: a batch of transitions becomes one upsert row per job, whatever
order they arrive in (pool processes and the worker's main process emit concurrently)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.jobs.models import JobStatus
from app.jobs.recorder import Transition, fold

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_the_latest_state_wins_whatever_order_the_transitions_arrive_in() -> None:
    batch = [
        Transition("a", JobStatus.COMPLETED, at=at(2), attempt=1, job={"result": 3}),
        Transition(
            "a", JobStatus.QUEUED, at=at(0), job={"handler": "demo.ping", "queue": "default"}
        ),
        Transition("a", JobStatus.RUNNING, at=at(1), attempt=1, worker="w1@host"),
    ]
    (row,) = fold(batch)
    assert (row["status"], row["status_at"]) == (JobStatus.COMPLETED, at(2))
    assert (row["handler"], row["queue"], row["worker"]) == ("demo.ping", "default", "w1@host")
    assert row["result"].obj == 3, "results and payloads go to PostgreSQL as JSON"


def test_a_field_a_later_transition_does_not_know_keeps_what_an_earlier_one_said() -> None:
    batch = [
        Transition(
            "a", JobStatus.RUNNING, at=at(1), job={"handler": "demo.ping", "last_error": None}
        ),
        Transition(
            "a", JobStatus.RETRYING, at=at(2), attempt=1, job={"last_error": "TransientError: x"}
        ),
        Transition("a", JobStatus.RUNNING, at=at(3), attempt=2, job={"handler": None}),
    ]
    (row,) = fold(batch)
    assert row["handler"] == "demo.ping", "None never overwrites a known value"
    assert row["last_error"] == "TransientError: x"
    assert row["attempts"] == 2


def test_attempts_are_the_highest_seen_and_jobs_get_a_row_each() -> None:
    batch = [
        Transition("a", JobStatus.RUNNING, at=at(3), attempt=3),
        Transition("b", JobStatus.QUEUED, at=at(1)),
        Transition("a", JobStatus.RETRYING, at=at(4), attempt=2),
    ]
    rows = {row["id"]: row for row in fold(batch)}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["attempts"] == 3
    assert rows["a"]["status"] == JobStatus.RETRYING


def test_a_job_known_only_by_its_id_still_gets_a_valid_row() -> None:
    (row,) = fold([Transition("c", JobStatus.CANCELLED, at=at(0))])
    assert (row["handler"], row["queue"]) == ("?", "?"), "the columns are NOT NULL"
    assert row["payload"].obj == {}
