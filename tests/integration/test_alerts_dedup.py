"""Alerts on the real database: one open alert per key, a cooldown PostgreSQL decides,
and one notification when two raisers meet on a new key at the same instant."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from app.db import engine
from app.jobs.service import JobService
from app.services import alerts
from config.settings import get_settings
from tests.servers import database_url

URL = database_url().replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Both channels configured in this process (the producer), on an empty table; the
    delivery jobs it enqueues are deleted afterwards (no worker here would run them)."""
    monkeypatch.setenv("CONVEYOR_ALERTS__EMAIL_TO", '["ops@example.com"]')
    monkeypatch.setenv("CONVEYOR_ALERTS__WEBHOOK_URL", "http://127.0.0.1:9/hook")
    get_settings.cache_clear()
    _forget()
    try:
        yield
    finally:
        _forget()
        monkeypatch.undo()
        get_settings.cache_clear()


def _forget() -> None:
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE alerts"))
        doomed = "SELECT id FROM jobs WHERE handler LIKE 'alerts.%'"
        conn.execute(text(f"DELETE FROM job_events WHERE job_id IN ({doomed})"))
        conn.execute(text("DELETE FROM jobs WHERE handler LIKE 'alerts.%'"))


def notification_jobs(alert_id: int) -> list[dict[str, object]]:
    """The delivery jobs the ledger holds for an alert, oldest first."""
    found = [
        job
        for handler in (alerts.EMAIL_TASK, alerts.WEBHOOK_TASK)
        for job in JobService().list(handler=handler, limit=500)[0]
        if job["metadata"].get("alert_id") == alert_id
    ]
    return sorted(found, key=lambda job: (job["created_at"], job["handler"]))


def test_raising_a_key_again_within_the_cooldown_counts_it_and_notifies_once(
    channels: None,
) -> None:
    key = f"disk.{uuid.uuid4().hex[:6]}"
    outcomes = [
        alerts.raise_alert(key, "warning", "Disk 91% full", f"sighting {n}", {"disk": "/var"})
        for n in range(5)
    ]
    assert [o.opened for o in outcomes] == [True, False, False, False, False]
    assert [o.notified for o in outcomes] == [True, False, False, False, False]
    assert len({o.alert.id for o in outcomes}) == 1
    (alert,) = alerts.open_alerts()
    assert alert.count == 5 and alert.detail == "sighting 4"
    assert alert.first_seen_at < alert.last_seen_at
    assert alert.last_notified_at == outcomes[0].alert.last_notified_at
    jobs = notification_jobs(alert.id)
    assert [job["handler"] for job in jobs] == ["alerts.email", "alerts.webhook"]
    assert {job["id"] for job in jobs} == set(outcomes[0].jobs)
    assert all(
        job["payload"]["kwargs"] == {"alert_id": alert.id, "event": "firing"} for job in jobs
    )
    assert all(job["queue"] == "default" for job in jobs)


def test_after_the_cooldown_a_raise_notifies_again(channels: None) -> None:
    key = f"queue.{uuid.uuid4().hex[:6]}"
    first = alerts.raise_alert(key, "critical", "Queue backed up", cooldown_s=1.0)
    quiet = alerts.raise_alert(key, "critical", "Queue backed up", cooldown_s=1.0)
    time.sleep(1.1)
    again = alerts.raise_alert(key, "critical", "Queue backed up", cooldown_s=1.0)
    assert (first.notified, quiet.notified, again.notified) == (True, False, True)
    assert again.alert.count == 3
    assert first.alert.last_notified_at is not None and again.alert.last_notified_at is not None
    assert again.alert.last_notified_at > first.alert.last_notified_at
    assert len(notification_jobs(first.alert.id)) == 4, "two channels, twice"


def test_resolving_closes_the_alert_once_and_a_new_raise_opens_another(channels: None) -> None:
    key = f"beat.{uuid.uuid4().hex[:6]}"
    opened = alerts.raise_alert(key, "critical", "No beat leader")
    resolved = alerts.resolve_alert(key, "a beat took the lease")
    assert resolved is not None and resolved.notified
    assert resolved.alert.resolved_at is not None
    assert resolved.alert.resolution == "a beat took the lease"
    assert alerts.resolve_alert(key) is None, "nothing open to resolve any more"
    assert alerts.open_alerts() == []
    events = [job["payload"]["kwargs"]["event"] for job in notification_jobs(opened.alert.id)]
    assert events == ["firing", "firing", "resolved", "resolved"]

    reopened = alerts.raise_alert(key, "critical", "No beat leader")
    assert reopened.opened and reopened.notified
    assert reopened.alert.id != opened.alert.id and reopened.alert.count == 1
    history = [a for a in alerts.recent_alerts(10) if a.key == key]
    assert [a.is_open for a in history] == [True, False]


def test_an_alert_raised_with_no_channel_stays_unnotified_until_one_is_configured(
    channels: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"memory.{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("CONVEYOR_ALERTS__EMAIL_TO", "[]")
    monkeypatch.setenv("CONVEYOR_ALERTS__WEBHOOK_URL", "")
    get_settings.cache_clear()
    silent = alerts.raise_alert(key, "warning", "Worker memory high")
    assert not silent.notified and silent.alert.last_notified_at is None and not silent.jobs
    assert alerts.resolve_alert(key) is not None
    assert notification_jobs(silent.alert.id) == []


def test_two_raisers_meeting_on_a_new_key_notify_once(channels: None) -> None:
    """Each round, a table lock holds both raisers at their upsert, then lets them go at
    once: both transactions began before either could see the other's row."""
    for _ in range(5):
        key = f"race.{uuid.uuid4().hex[:6]}"
        outcomes: list[alerts.AlertOutcome] = []

        def raiser(key: str = key, outcomes: list[alerts.AlertOutcome] = outcomes) -> None:
            outcomes.append(alerts.raise_alert(key, "critical", "Race"))

        raisers = [threading.Thread(target=raiser) for _ in range(2)]
        with psycopg.connect(URL) as gate:
            gate.execute("LOCK TABLE alerts IN SHARE MODE")
            for raiser in raisers:
                raiser.start()
            _wait_for_lock_waiters(2)
            gate.commit()
        for raiser in raisers:
            raiser.join(30)
        assert len(outcomes) == 2
        assert sorted(o.opened for o in outcomes) == [False, True]
        assert sorted(o.notified for o in outcomes) == [False, True]
        (alert,) = [a for a in alerts.open_alerts() if a.key == key]
        assert alert.count == 2
        assert len(notification_jobs(alert.id)) == 2, "one email job and one webhook job"


def _wait_for_lock_waiters(count: int) -> None:
    # Autocommit: a transaction reads pg_stat_activity once and keeps that snapshot.
    with psycopg.connect(URL, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%%INSERT INTO alerts%%'"
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            time.sleep(0.02)
    pytest.fail(f"{count} raisers never waited on the table lock")
