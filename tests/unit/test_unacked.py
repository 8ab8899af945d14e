"""Reading a job's id and ETA from an entry of kombu's ``unacked`` hash on Redis."""

from __future__ import annotations

import json

from app.jobs.unacked import Entry, entry_of


def test_the_job_is_the_task_id_in_the_messages_headers() -> None:
    message = {"headers": {"id": "job-1", "task": "probe.record"}, "properties": {}}
    assert entry_of(json.dumps([message, "", "default"])) == Entry("job-1", None)


def test_a_message_with_an_eta_gives_it_in_epoch_seconds() -> None:
    message = {"headers": {"id": "job-3", "eta": "2026-12-03T18:00:30+00:00"}}
    assert entry_of(json.dumps([message, "", "default"])) == Entry("job-3", 1796320830.0)
    message["headers"]["eta"] = "not a time"
    assert entry_of(json.dumps([message, "", "default"])) == Entry("job-3", None)


def test_a_message_without_headers_falls_back_on_its_correlation_id() -> None:
    message = {"properties": {"correlation_id": "job-2"}}
    assert entry_of(json.dumps([message, "", "default"]).encode()).job == "job-2"


def test_an_entry_that_names_no_job_gives_none() -> None:
    for raw in ([{"body": "x"}, "", "default"], {"a": 1}, [], [None]):
        assert entry_of(json.dumps(raw)) == Entry(None), raw
    assert entry_of(b"not json") == Entry(None)
