"""Beat on real processes: leader handover, misfires, runtime edits, bad rows, overlap.

Every test runs real ``python -m app beat`` subprocesses against the run's
PostgreSQL and Redis; fires are counted from the unique fire records and the
ledger, executions from the effect rows the probe task writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import text

from app.db import engine
from app.jobs.service import JobService
from beat.service import ScheduleService
from config.settings import get_settings
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Beat, Worker
from tests.integration.test_schedule_service import empty_schedules
from tests.servers import Broker

pytestmark = pytest.mark.usefixtures("effects")


@pytest.fixture
def schedules() -> Iterator[ScheduleService]:
    empty_schedules()
    yield ScheduleService()
    empty_schedules()


def fires(name: str) -> list[dict[str, Any]]:
    """Every fire record of schedule ``name``, oldest first."""
    return ScheduleService().history(name, limit=10_000)[::-1]


def jobs_of(name: str) -> list[dict[str, Any]]:
    """The ledger's jobs fired by schedule ``name`` (which JobService does not filter
    by), oldest fire first."""
    with engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, status, metadata->>'fire_time' AS fire_time FROM jobs "
                "WHERE metadata->>'schedule' = :name ORDER BY metadata->>'fire_time'"
            ),
            {"name": name},
        ).mappings()
        return [dict(row) for row in rows]


def leader() -> str | None:
    lease = ScheduleService().leader()
    return lease["holder"] if lease else None


def sql(statement: str, **params: Any) -> None:
    with engine().begin() as conn:
        conn.execute(text(statement), params)


#: The handover test kills the leader this long after the beats started, and stops
#: them at RUN_FOR_S: a slot every 2 s, a handover within the lease (7 s), both brokers.
KILL_AT_S, RUN_FOR_S = 16, 36


def test_three_beats_fire_each_slot_once_across_a_leader_kill(
    broker: Broker, schedules: ScheduleService, effects: Effects
) -> None:
    schedules.create("every2s", "probe.stamp", "*/2 * * * * *", misfire="catch_up", overlap="allow")
    conf = get_settings().beat
    bound = conf.lease_ttl_s + conf.renew_interval_s
    with Worker(broker.url, concurrency=2):
        beats = [Beat(broker.url) for _ in range(3)]
        for beat in beats:
            beat.start()
        try:
            started = time.monotonic()
            time.sleep(max(0.0, KILL_AT_S - (time.monotonic() - started)))
            holder = wait_for(leader, 10, "a beat leader")
            victim = next(b for b in beats if f":{b.pid}:" in f":{holder.split(':')[1]}:")
            killed_at = datetime.now(UTC)
            victim.kill()
            new_leader = wait_for(
                lambda: (h := leader()) and h != holder and h, bound + 5, "a new leader"
            )
            assert new_leader != holder
            time.sleep(max(0.0, RUN_FOR_S - (time.monotonic() - started)))
        finally:
            for beat in beats:
                beat.terminate()
        records = fires("every2s")
        slots = [r["fire_time"] for r in records]
        # One record per slot (unique in the table), and no slot missing in between.
        assert all(b - a == timedelta(seconds=2) for a, b in pairwise(slots))
        assert len(slots) >= (RUN_FOR_S - 6) // 2
        assert {r["outcome"] for r in records} == {"enqueued"}
        # Handover: slots due while nobody led were fired late, within the bound.
        late = max((r["fired_at"] - r["fire_time"]).total_seconds() for r in records)
        assert late <= bound + 1.5, f"a slot waited {late:.1f}s for a leader"
        assert any(r["fire_time"] > killed_at and r["beat"] != holder for r in records)
        # Exactly one job and one execution per slot.
        jobs = jobs_of("every2s")
        assert len(jobs) == len(slots)
        assert len({j["fire_time"] for j in jobs}) == len(slots)
        for job in jobs:
            wait_for(lambda j=job: effects.count(str(j["id"]), "done") >= 1, 30, "every run")
        assert all(effects.count(str(j["id"])) == 1 for j in jobs), "a slot ran twice"


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def test_misfire_policies_after_beat_was_down_for_three_hourly_slots(
    broker: Broker, schedules: ScheduleService
) -> None:
    for policy in ("fire_once", "skip", "catch_up"):
        schedules.create(policy, "probe.stamp", "0 * * * *", misfire=policy, overlap="allow")
    # A controllable clock: beat's own starts 2 s after the next hour, a slot it finds
    # due at its start, within the grace: on time, whatever the start took.
    real = datetime.now(UTC)
    hour = hour_floor(real) + timedelta(hours=1)
    offset = (hour + timedelta(seconds=2) - real).total_seconds()
    sql("UPDATE conveyor_schedule SET cursor = :c", c=hour - timedelta(seconds=5))
    # The clock runs from the launch: a beat slow to start on a loaded machine finds the
    # slot later still, so the grace is wide. The missed slots below are half an hour
    # late and more, far past it.
    grace = {"CONVEYOR_BEAT__MISFIRE_GRACE_S": "600"}
    with Beat(broker.url, clock_offset_s=offset, env=grace):
        wait_for(lambda: all(fires(p) for p in ("fire_once", "skip", "catch_up")), 60, "the slot")
    assert [r["outcome"] for r in fires("skip")] == ["enqueued"], "the slot fired on time"
    # Beat is down over the next three slots; it comes back half an hour after the third.
    with Beat(broker.url, clock_offset_s=offset + 3.5 * 3600 + 3, env=grace):
        wait_for(lambda: len(fires("catch_up")) == 4 and len(fires("skip")) == 2, 20, "catch-up")
        time.sleep(2)  # nothing more may come
    stamps = {p: [j["fire_time"] for j in jobs_of(p)] for p in ("fire_once", "skip", "catch_up")}
    iso = [(hour + timedelta(hours=h)).isoformat() for h in range(4)]
    assert stamps["fire_once"] == [iso[0], iso[3]], "one run for the three missed slots"
    assert stamps["skip"] == [iso[0]], "no run for missed slots"
    assert stamps["catch_up"] == iso, "one run per missed slot, each stamped"
    assert [r["outcome"] for r in fires("skip")] == ["enqueued", "missed"]


def test_edits_through_the_database_apply_within_seconds(
    broker: Broker, schedules: ScheduleService
) -> None:
    schedules.create("edited", "probe.stamp", "*/4 * * * * *", misfire="skip", overlap="allow")
    with Beat(broker.url) as beat:
        wait_for(lambda: len(fires("edited")) >= 2, 20, "two fires")

        # An expression edit by SQL (the seconds field): the new cadence within 5 s.
        edited_at = datetime.now(UTC)
        sql(
            "UPDATE conveyor_schedule SET second = '*/3' WHERE periodic_task_id = "
            "(SELECT id FROM django_celery_beat_periodictask WHERE name = 'edited')"
        )
        new = wait_for(
            lambda: [
                r for r in fires("edited")
                if r["fire_time"] > edited_at and r["fire_time"].second % 3 == 0
                and r["fire_time"].second % 4 != 0
            ],
            10,
            "a fire on the new expression",
        )  # fmt: skip
        assert (new[0]["fire_time"] - edited_at).total_seconds() <= 5

        # Disabled by SQL: no fire after the next reload.
        sql("UPDATE django_celery_beat_periodictask SET enabled = false WHERE name = 'edited'")
        disabled_at = datetime.now(UTC)
        time.sleep(7)
        assert not [
            r for r in fires("edited") if r["fire_time"] > disabled_at + timedelta(seconds=1.5)
        ]

        # Re-enabled (policy skip): the missed slots are recorded, no immediate run and
        # then the next slot, never two runs back to back.
        sql("UPDATE django_celery_beat_periodictask SET enabled = true WHERE name = 'edited'")
        enabled_at = datetime.now(UTC)
        wait_for(lambda: [r for r in fires("edited") if r["fire_time"] > enabled_at], 10, "a fire")
        after = [
            r for r in fires("edited") if r["fire_time"] > disabled_at + timedelta(seconds=1.5)
        ]
        runs = [r for r in after if r["outcome"] == "enqueued"]
        assert [r["outcome"] for r in after if r["outcome"] != "enqueued"] == ["missed"]
        assert all(r["fire_time"] > enabled_at for r in runs)

        # An edit half a second before a slot swallows no run.
        sql("UPDATE conveyor_schedule SET second = '*/10'")
        time.sleep(2)
        now = datetime.now(UTC)
        slot = now.replace(microsecond=0) + timedelta(seconds=10 - now.second % 10)
        time.sleep((slot - timedelta(seconds=0.5) - datetime.now(UTC)).total_seconds())
        sql("UPDATE conveyor_schedule SET second = '*/5'")
        wait_for(lambda: any(r["fire_time"] == slot for r in fires("edited")), 5, "the slot")
        assert beat.alive()


def test_rows_that_cannot_be_scheduled_are_disabled_and_the_others_keep_firing(
    redis_broker: Broker, schedules: ScheduleService
) -> None:
    schedules.create("good", "probe.stamp", "*/2 * * * * *", overlap="allow")
    with Beat(redis_broker.url) as beat:
        wait_for(lambda: fires("good"), 10, "the good schedule")
        with engine().begin() as conn:
            for name, fields, task in (
                ("minute 61", ("61", "*", "*", "*", "*"), "probe.stamp"),
                ("30 February", ("0", "0", "30", "2", "*"), "probe.stamp"),
                ("unknown task", ("*", "*", "*", "*", "*"), "no.such.task"),
            ):
                crontab = conn.execute(
                    text(
                        "INSERT INTO django_celery_beat_crontabschedule (minute, hour, "
                        "day_of_month, month_of_year, day_of_week, timezone) "
                        "VALUES (:m, :h, :dom, :mon, :dow, 'UTC') RETURNING id"
                    ),
                    dict(zip(("m", "h", "dom", "mon", "dow"), fields, strict=True)),
                ).scalar()
                conn.execute(
                    text(
                        "INSERT INTO django_celery_beat_periodictask (name, task, args, kwargs, "
                        "enabled, one_off, total_run_count, date_changed, description, "
                        "crontab_id, headers) VALUES (:name, :task, '[]', '{}', true, false, 0, "
                        "now(), '', :crontab, '{}')"
                    ),
                    {"name": name, "task": task, "crontab": crontab},
                )
        inserted = datetime.now(UTC)
        errors = wait_for(
            lambda: (
                {
                    item["name"]: item["error"]
                    for item in schedules.list()
                    if not item["enabled"] and item["error"]
                }
                if len([i for i in schedules.list() if not i["enabled"]]) == 3
                else None
            ),
            10,
            "the bad rows disabled",
        )
        assert "minute 61 out of range 0-59" in errors["minute 61"]
        assert "can never fire" in errors["30 February"]
        assert "no.such.task" in errors["unknown task"]
        wait_for(
            lambda: [r for r in fires("good") if r["fire_time"] > inserted + timedelta(seconds=2)],
            10,
            "the good schedule still firing",
        )
        assert beat.alive()


def test_a_long_run_is_not_started_twice_and_the_skip_is_in_the_ledger(
    redis_broker: Broker, schedules: ScheduleService, effects: Effects
) -> None:
    schedules.create("long", "probe.stamp", "*/2 * * * * *", kwargs={"sleep_s": 5})
    with Worker(redis_broker.url, concurrency=2), Beat(redis_broker.url):
        wait_for(
            lambda: len([r for r in fires("long") if r["outcome"] == "skipped"]) >= 3, 30, "skips"
        )
        first = next(r for r in fires("long") if r["outcome"] == "enqueued")
        wait_for(lambda: effects.count(str(first["job_id"]), "done") == 1, 20, "the first run")
    runs = [(r[0], r[1], r[4]) for r in effects.rows() if r[1] in ("start", "done")]
    spans: dict[str, list[datetime]] = {}
    for key, _phase, at in runs:
        spans.setdefault(key, []).append(at)
    ordered = sorted(spans.values())
    for before, after in pairwise(ordered):
        assert len(before) == 2 and after[0] >= before[1], "two runs of one schedule overlapped"
    skipped = [r for r in fires("long") if r["outcome"] == "skipped"]
    assert {r["job_id"] for r in skipped} <= {
        r["job_id"] for r in fires("long") if r["outcome"] == "enqueued"
    }
    notes = [
        event["detail"]
        for event in JobService().history(first["job_id"])
        if (event["detail"] or "").startswith("fire ")
    ]
    assert notes and all("overlap policy skip" in note for note in notes)


def test_queue_one_keeps_one_run_waiting_and_starts_it_when_the_previous_ends(
    redis_broker: Broker, schedules: ScheduleService, effects: Effects
) -> None:
    schedules.create(
        "queued", "probe.stamp", "*/2 * * * * *", kwargs={"sleep_s": 4}, overlap="queue_one"
    )
    with Worker(redis_broker.url, concurrency=2), Beat(redis_broker.url):
        waiting = wait_for(
            lambda: [r for r in fires("queued") if r["outcome"] == "waiting"], 20, "a waiting run"
        )
        wait_for(lambda: any(r["outcome"] == "skipped" for r in fires("queued")), 10, "a skip")
        # The waiting run starts once the one before it has finished.
        first_waiting = str(waiting[0]["job_id"])
        wait_for(lambda: effects.count(first_waiting, "done") == 1, 30, "the waiting run")
    spans: dict[str, list[datetime]] = {}
    for key, phase, _pid, _retries, at in effects.rows():
        if phase in ("start", "done"):
            spans.setdefault(key, []).append(at)
    ordered = sorted(span for span in spans.values() if len(span) == 2)
    assert len(ordered) >= 2
    for before, after in pairwise(ordered):
        assert after[0] >= before[1], "queue_one started a run while the previous one ran"
    skipped = [r for r in fires("queued") if r["outcome"] == "skipped"]
    assert all("waits" in r["detail"] for r in skipped)
