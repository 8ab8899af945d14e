"""Schedule options for a start: an initial delay before an interval's first fire, and
the run-on-startup flag beat reads (its once-per-cluster-start fire is tested with real
beats in tests/acceptance/test_recurring.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.db import engine
from app.errors import InvalidScheduleField
from beat import tables
from beat.plan import Plan
from beat.service import ScheduleService
from tests.integration.test_schedule_service import empty_schedules


@pytest.fixture
def service() -> Iterator[ScheduleService]:
    empty_schedules()
    yield ScheduleService()
    empty_schedules()


def plan_of(service: ScheduleService, name: str) -> Plan:
    with engine().connect() as conn:
        row = tables.load_row(conn, service.get(name)["id"])
    return tables.build_plan(row, datetime.now(UTC))


def test_an_initial_delay_holds_an_intervals_first_fire_back(service: ScheduleService) -> None:
    before = datetime.now(UTC)
    made = service.create("warm", "demo.ping", "@every 10s", initial_delay_s=120)
    assert made["start_time"] >= before + timedelta(seconds=120)
    first = plan_of(service, "warm").next_fire
    assert first is not None
    assert before + timedelta(seconds=120) <= first <= before + timedelta(seconds=131)
    service.create("now", "demo.ping", "@every 10s")
    soon = plan_of(service, "now").next_fire
    assert soon is not None and soon <= datetime.now(UTC) + timedelta(seconds=10)


def test_run_on_startup_is_stored_read_by_beat_and_editable(service: ScheduleService) -> None:
    made = service.create("boot", "demo.ping", "0 3 * * *", run_on_startup=True)
    assert made["run_on_startup"] is True
    assert plan_of(service, "boot").run_on_startup is True
    assert service.update("boot", run_on_startup=False)["run_on_startup"] is False
    assert plan_of(service, "boot").run_on_startup is False


def test_a_negative_initial_delay_is_refused_naming_the_field(service: ScheduleService) -> None:
    with pytest.raises(InvalidScheduleField, match="initial_delay_s"):
        service.create("bad", "demo.ping", "@every 10s", initial_delay_s=-5)
