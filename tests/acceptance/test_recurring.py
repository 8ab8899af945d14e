"""Recurring jobs made by ``JobService.enqueue`` with a cron expression, fired by a real
beat and run by a real worker, on both brokers: on seconds slots, each fire a job, an
update followed within seconds, a delete that stops it (the same on minute slots, with
``*/1`` then ``*/2``, is :mod:`tests.acceptance.recurring_minutes`); and a
run-on-startup schedule fires once for a cluster of beats.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from app.jobs.service import JobService
from beat.service import ScheduleService
from config.settings import get_settings
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.test_beat import fires, jobs_of, leader, sql
from tests.acceptance.workers import Beat, Worker
from tests.integration.test_schedule_service import empty_schedules
from tests.servers import Broker

pytestmark = pytest.mark.acceptance


@pytest.fixture
def clean(effects: Effects) -> Iterator[Effects]:
    empty_schedules()
    yield effects
    empty_schedules()


def test_a_recurring_job_fires_follows_its_update_and_stops_when_deleted(
    broker: Broker, clean: Effects
) -> None:
    service = JobService()
    job_id = service.enqueue(
        "probe.record", {"key": "digest"}, job_name="digest", schedule="*/2 * * * * *"
    )
    assert ScheduleService().get("digest")["job_id"] == job_id
    with Worker(broker.url, queues="default", concurrency=1), Beat(broker.url):
        wait_for(lambda: clean.count("digest") >= 3, 30, "three runs, one every 2 s")
        wait_for(
            lambda: len([job for job in jobs_of("digest") if job["status"] == "completed"]) >= 3,
            10,
            "each fire a job of its own in the ledger, completed",
        )

        updated_at = datetime.now(UTC)
        service.update_schedule(job_id, "*/5 * * * * *")
        time.sleep(6)  # the reload, and whatever fire was already due
        wait_for(
            lambda: len([f for f in fires("digest") if f["fire_time"] > updated_at]) >= 4,
            30,
            "fires on the new expression",
        )
        later = [f["fire_time"] for f in fires("digest") if f["fire_time"] > updated_at]
        assert all(t.second % 5 == 0 for t in later[-2:]), later

        service.delete(job_id)
        deleted_at = datetime.now(UTC)
        time.sleep(8)
        after = [f for f in fires("digest") if f["fire_time"] > deleted_at.replace(microsecond=0)]
        assert len(after) <= 1, f"at most the fire already due at the delete: {after}"
    assert service.recurring(job_id) is None


def test_a_run_on_startup_schedule_fires_once_for_three_beats_and_a_handover(
    broker: Broker, clean: Effects
) -> None:
    ScheduleService().create("warm-up", "probe.stamp", "0 0 1 1 *", run_on_startup=True)
    sql("DELETE FROM conveyor_beat_lease WHERE name = 'beat'")  # no beat ran before: a start
    conf = get_settings().beat
    with Worker(broker.url, queues="default", concurrency=1):
        startup = [Beat(broker.url) for _ in range(3)]
        try:
            for beat in startup:
                beat.start()
            wait_for(lambda: fires("warm-up"), 20, "the fire for the cluster's start")
            holder = wait_for(leader, 10, "a beat leader")
            time.sleep(3)
            victim = next(b for b in startup if f":{b.pid}:" in f":{holder.split(':')[1]}:")
            victim.kill()  # a handover within the epoch: no second fire
            wait_for(
                lambda: (h := leader()) and h != holder, conf.lease_ttl_s + 10, "another leader"
            )
            time.sleep(3)
            assert len(fires("warm-up")) == 1, "one fire for three beats and a handover"
        finally:
            for beat in startup:
                beat.terminate()
        # The whole cluster was down for a minute: the next start is a start again.
        sql("UPDATE conveyor_beat_lease SET expires_at = now() - interval '60 seconds'")
        with Beat(broker.url):
            wait_for(lambda: len(fires("warm-up")) == 2, 20, "the fire for the next start")
    records = fires("warm-up")
    assert [r["detail"] for r in records] == ["run on startup"] * 2
    assert {r["outcome"] for r in records} == {"enqueued"}
    assert len(jobs_of("warm-up")) == 2
