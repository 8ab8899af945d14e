"""ScheduleService and the declarative sync against the real beat database."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.errors import InvalidPayload, InvalidSchedule, InvalidScheduleField, UnknownHandler
from beat import tables
from beat.defaults import DEFAULT_SCHEDULES, Recurring
from beat.service import ScheduleService

ROOT = Path(__file__).resolve().parents[2]


def empty_schedules() -> None:
    with engine().begin() as conn:
        conn.execute(
            text(
                "TRUNCATE conveyor_schedule, conveyor_schedule_fire, conveyor_beat_lease, "
                "conveyor_beat_instance, django_celery_beat_periodictask, "
                "django_celery_beat_crontabschedule, django_celery_beat_intervalschedule CASCADE"
            )
        )


@pytest.fixture
def service() -> Iterator[ScheduleService]:
    empty_schedules()
    yield ScheduleService()
    empty_schedules()


@pytest.fixture
def retired_task() -> Iterator[str]:
    """A task registered now, which the test's next release of the code drops."""
    name = "maintenance.recover_stuck_jobs"

    def recover_stuck_jobs() -> None:
        """What an old release did with stuck jobs (now the workers' heartbeat does it)."""

    app.task(name=name, shared=False)(recover_stuck_jobs)
    yield name
    app.tasks.pop(name, None)


def count() -> int:
    with engine().connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM django_celery_beat_periodictask")).scalar_one()
        )


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("61 * * * *", "minute 61 out of range 0-59"),
        ("0 0 30 2 *", "it can never fire"),
        ("0 0 * * * * *", "7 fields"),
    ],
)
def test_bad_cron_is_refused_on_every_path_and_nothing_is_stored(
    service: ScheduleService, cron: str, reason: str
) -> None:
    with pytest.raises(InvalidSchedule, match=reason):
        service.create("bad", "demo.ping", cron)
    assert count() == 0

    service.create("good", "demo.ping", "*/5 * * * *")
    with pytest.raises(InvalidSchedule, match=reason):
        service.update("good", cron=cron)
    assert service.get("good")["cron"] == "*/5 * * * *"

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "schedules",
            "add",
            "cli",
            "--task=demo.ping",
            f"--cron={cron}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 2 and reason in cli.stderr
    outcome = service.sync_defaults([Recurring(name="declared", task="demo.ping", cron=cron)])
    assert outcome["declared"].startswith("error:") and reason in outcome["declared"]
    assert {item["name"] for item in service.list()} == {"good"}


def test_other_fields_are_checked_before_anything_is_stored(service: ScheduleService) -> None:
    with pytest.raises(UnknownHandler, match=r"demo\.ping"):
        service.create("x", "no.such.task", "* * * * *")
    with pytest.raises(InvalidPayload, match="message"):
        service.create("x", "demo.ping", "* * * * *", kwargs={"message": ["not", "text"]})
    with pytest.raises(InvalidSchedule, match="time zone 'Nowhere/Land' is unknown"):
        service.create("x", "demo.ping", "* * * * *", timezone="Nowhere/Land")
    with pytest.raises(InvalidScheduleField, match="misfire: 'sometimes' is not one of"):
        service.create("x", "demo.ping", "* * * * *", misfire="sometimes")
    with pytest.raises(InvalidScheduleField, match="overlap: 'never' is not one of"):
        service.create("x", "demo.ping", "* * * * *", overlap="never")
    assert count() == 0
    service.create("x", "demo.ping", "* * * * *")
    with pytest.raises(InvalidScheduleField, match="name: a schedule named 'x' exists"):
        service.create("x", "demo.ping", "0 * * * *")


def test_seconds_aliases_intervals_and_time_zones_round_trip(service: ScheduleService) -> None:
    assert service.create("s", "demo.ping", "*/10 * * * * *")["cron"] == "*/10 * * * * *"
    assert service.create("h", "demo.ping", "@hourly")["cron"] == "0 * * * *"
    assert service.create("e", "demo.ping", "@every 15m")["cron"] == "@every 15m"
    berlin = service.create("b", "demo.ping", "30 2 * * *", timezone="Europe/Berlin")
    assert berlin["timezone"] == "Europe/Berlin"
    times = service.preview("b", 3)
    assert [t.utcoffset() is not None and t.strftime("%H:%M") for t in times] == ["02:30"] * 3


def test_declared_defaults_are_created_updated_and_an_operators_edit_is_kept(
    service: ScheduleService,
) -> None:
    names = {item.name for item in DEFAULT_SCHEDULES}
    assert set(service.sync_defaults().values()) == {"created"}
    assert {item["name"] for item in service.list()} == names
    assert set(service.sync_defaults().values()) == {"unchanged"}

    # The code changes one definition (a declaration is always whole): the sync follows it.
    report = next(item for item in DEFAULT_SCHEDULES if item.task == "reports.job_summary")
    changed = [
        Recurring(**{**item.__dict__, "cron": "0 7 * * *"}) if item is report else item
        for item in DEFAULT_SCHEDULES
    ]
    assert service.sync_defaults(changed) == {
        item.name: "updated" if item is report else "unchanged" for item in DEFAULT_SCHEDULES
    }
    assert service.get(report.name)["cron"] == "0 7 * * *"

    # An operator edits it (through the service, and another one by SQL): both are kept.
    service.update(report.name, cron="30 5 * * *", actor="alice")
    with engine().begin() as conn:
        conn.execute(
            text("UPDATE django_celery_beat_periodictask SET enabled = false WHERE name = :name"),
            {"name": DEFAULT_SCHEDULES[0].name},
        )
    outcome = service.sync_defaults()
    assert outcome[report.name] == "kept: edited by alice"
    assert outcome[DEFAULT_SCHEDULES[0].name].startswith("kept")
    assert service.get(report.name)["cron"] == "30 5 * * *"
    assert service.get(report.name)["edited_by"] == "alice"
    assert service.get(DEFAULT_SCHEDULES[0].name)["enabled"] is False


def test_a_description_follows_the_code_unless_an_operator_rewrote_it(
    service: ScheduleService,
) -> None:
    first, second = DEFAULT_SCHEDULES[0], DEFAULT_SCHEDULES[1]
    service.sync_defaults()
    reworded = [
        Recurring(**{**item.__dict__, "description": f"{item.description} (reworded)"})
        if item in (first, second)
        else item
        for item in DEFAULT_SCHEDULES
    ]
    service.update(second.name, description="our own words", actor="alice")
    outcome = service.sync_defaults(reworded)
    assert outcome[first.name] == "updated"
    assert service.get(first.name)["description"] == f"{first.description} (reworded)"
    assert outcome[second.name] == "kept: edited by alice"
    assert service.get(second.name)["description"] == "our own words"


def test_a_default_synced_before_descriptions_counted_is_brought_up_to_date(
    service: ScheduleService,
) -> None:
    from beat.defaults import digest

    first = DEFAULT_SCHEDULES[0]
    service.sync_defaults()
    # As an older release stored it: a digest of the definition without its description.
    definition = service._definition(service._describe(service._task(first.name)))
    legacy = digest({k: v for k, v in definition.items() if k != "description"})
    options = service._options(service._task(first.name))
    options.synced_hash = legacy
    options.save()
    # Not mistaken for an operator's edit: updated once (its description is the code's),
    # then in step.
    assert service.sync_defaults()[first.name] == "updated"
    assert service.sync_defaults()[first.name] == "unchanged"


def test_an_expression_edit_moves_the_cursor_to_the_edit(service: ScheduleService) -> None:
    service.create("m", "demo.ping", "0 3 * * *")
    with engine().connect() as conn:
        before = conn.execute(text("SELECT cursor FROM conveyor_schedule")).scalar_one()
    service.update("m", kwargs={"message": "payload edits keep the cursor"})
    with engine().connect() as conn:
        assert conn.execute(text("SELECT cursor FROM conveyor_schedule")).scalar_one() == before
    service.update("m", cron="* * * * *")
    with engine().connect() as conn:
        assert conn.execute(text("SELECT cursor FROM conveyor_schedule")).scalar_one() > before


def test_a_default_the_code_no_longer_declares_is_deleted_or_disabled_if_edited(
    service: ScheduleService, retired_task: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An old release declared three more defaults; an operator tuned one of them, and has
    # a schedule of their own.
    stuck = Recurring(name="recover stuck jobs", task=retired_task, cron="*/5 * * * *")
    pinged = Recurring(name="hourly ping", task="demo.ping", cron="@hourly")
    tuned = Recurring(name="nightly ping", task="demo.ping", cron="0 4 * * *")
    old_release = [*DEFAULT_SCHEDULES, stuck, pinged, tuned]
    assert set(service.sync_defaults(old_release).values()) == {"created"}
    service.update(tuned.name, cron="30 4 * * *", actor="alice")
    service.create("mine", "demo.ping", "0 5 * * *", actor="bob")
    stuck_id = service.get(stuck.name)["id"]
    with engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conveyor_schedule_fire (periodic_task_id, schedule_name, fire_time, "
                "fired_at, outcome, beat, detail) "
                "VALUES (:id, :name, now(), now(), 'enqueued', 'beat@host', '')"
            ),
            {"id": stuck_id, "name": stuck.name},
        )

    # This release neither registers the task nor declares the three schedules, and a beat
    # disabled the one whose task is gone (as it does a row it cannot schedule).
    app.tasks.unregister(retired_task)
    with engine().begin() as conn:
        conn.execute(tables.DISABLE, {"id": stuck_id, "error": f"unknown task {retired_task}"})
    with caplog.at_level(logging.INFO, logger="beat.service"):
        outcome = service.sync_defaults()

    assert outcome == {
        **{item.name: "unchanged" for item in DEFAULT_SCHEDULES},
        stuck.name: "deleted: no longer declared",
        pinged.name: "deleted: no longer declared",
        tuned.name: "disabled: no longer declared, kept: edited by alice",
    }
    assert f"{stuck.name!r}: deleted: no longer declared" in caplog.text
    assert f"{tuned.name!r}: disabled: no longer declared" in caplog.text
    names = {item["name"] for item in service.list()}
    assert names == {*(item.name for item in DEFAULT_SCHEDULES), tuned.name, "mine"}
    assert [fire["outcome"] for fire in service.history(stuck.name)] == ["enqueued"]
    kept = service.get(tuned.name)
    assert (kept["enabled"], kept["cron"]) == (False, "30 4 * * *")
    assert (kept["managed_by"], kept["edited_by"]) == ("operator", "code")
    assert kept["error"] == (
        "no longer declared in beat/defaults.py; disabled, and kept because alice edited it"
    )
    assert service.get("mine")["enabled"] is True

    # Withdrawn once: the kept one is the operators' now, and the sync leaves it alone.
    assert service.sync_defaults() == {item.name: "unchanged" for item in DEFAULT_SCHEDULES}
    service.enable(tuned.name, actor="alice")
    assert service.sync_defaults() == {item.name: "unchanged" for item in DEFAULT_SCHEDULES}
    assert service.get(tuned.name)["enabled"] is True
    assert service.get(tuned.name)["error"] == ""


def test_a_schedule_deleted_while_it_is_triggered_is_not_found_not_a_crash(
    service: ScheduleService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.errors import ScheduleNotFound

    service.create("gone-soon", "demo.ping", "0 3 * * *")
    lookup = service._task

    def racing(name: str) -> Any:
        found = lookup(name)
        monkeypatch.setattr(service, "_task", lookup)
        service.delete(name)  # another request deletes it between the lookup and the fire
        return found

    monkeypatch.setattr(service, "_task", racing)
    with pytest.raises(ScheduleNotFound, match="gone-soon"):
        service.trigger("gone-soon", actor="alice")
