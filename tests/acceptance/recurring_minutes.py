"""A recurring job's life on minute slots, fired by a real beat on its real clock and run
by a real worker: a fire at each whole minute, each a job of its own; an update to every
two minutes followed from the next slot; a delete that stops it.

Minute slots take minutes (from the first fire, four minutes, or five when the first
lands on an odd minute), so the scenario runs once per broker from two test modules,
``test_recurring_minutes_redis`` and ``test_recurring_minutes_rabbitmq``, which the
suite's parallel processes take up side by side.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.jobs.service import JobService
from beat.service import ScheduleService
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.test_beat import fires, jobs_of, leader
from tests.acceptance.workers import Beat, Worker
from tests.servers import Broker

#: Seconds the scenario may take: up to a minute to the first slot, then five minutes.
TIMEOUT_S = 540

MINUTE = timedelta(minutes=1)
#: A fire is on time when beat records it this soon after its slot: beat sleeps until
#: the next slot, and wakes at least once a second to renew its lease anyway.
ON_TIME_S = 2.0
#: A fire's job starts in the worker this soon after the slot.
STARTS_WITHIN = timedelta(seconds=15)
#: How long past a boundary a fire that should not come is looked for: a fire later
#: than this would have failed the on-time check of every fire that did come.
SETTLE = timedelta(seconds=ON_TIME_S + 1)


def on_time(record: dict[str, Any]) -> datetime:
    """The fire time of ``record``, a fire beat made on time, at a whole minute."""
    slot: datetime = record["fire_time"]
    assert (slot.second, slot.microsecond) == (0, 0), record
    late_s = (record["fired_at"] - slot).total_seconds()
    assert 0 <= late_s <= ON_TIME_S, f"the fire at {slot} was recorded {late_s:.2f}s after it"
    assert (record["outcome"], record["detail"]) == ("enqueued", ""), record
    return slot


def fire_after(name: str, after: datetime, slot: datetime) -> datetime:
    """Wait for the first fire of ``name`` after ``after``: it must be at ``slot``, on time."""
    timeout_s = (slot + SETTLE - datetime.now(UTC)).total_seconds()
    record = wait_for(
        lambda: next((f for f in fires(name) if f["fire_time"] > after), None),
        max(timeout_s, 1.0),
        f"the fire at {slot:%H:%M:%S}",
    )
    assert record["fire_time"] == slot, f"expected the fire at {slot}, got {record}"
    return on_time(record)


def completed(name: str, slot: datetime) -> None:
    """Wait until the fire of ``name`` at ``slot`` is one job in the ledger, completed."""
    stamp = slot.isoformat()
    wait_for(
        lambda: [j["status"] for j in jobs_of(name) if j["fire_time"] == stamp] == ["completed"],
        30,
        f"the job of the fire at {slot:%H:%M} completed",
    )


def quiet_until(name: str, after: datetime, until: datetime, what: str) -> None:
    """Fail as soon as ``name`` fires after ``after``; return at ``until`` if it did not."""
    while True:
        late = [f for f in fires(name) if f["fire_time"] > after]
        assert not late, f"{what}: {late}"
        if datetime.now(UTC) >= until:
            return
        time.sleep(0.5)


def fires_each_minute_follows_its_update_and_stops_when_deleted(
    broker: Broker, clean: Effects
) -> None:
    """The scenario, on ``broker``."""
    service = JobService()
    job_id = service.enqueue(
        "probe.record", {"key": "digest"}, job_name="digest", schedule="*/1 * * * *"
    )
    schedule = ScheduleService().get("digest")
    assert schedule["job_id"] == job_id
    zone = ZoneInfo(schedule["timezone"])

    def odd(slot: datetime) -> bool:
        return slot.astimezone(zone).minute % 2 == 1

    with Worker(broker.url, queues="default", concurrency=1), Beat(broker.url):
        wait_for(leader, 10, "a beat leader")
        leading_at = datetime.now(UTC)
        # Every minute, from the first boundary beat sees: until two fires have come and
        # the last was on an odd minute (so the update below is followed by an even one).
        first = wait_for(lambda: fires("digest"), 60 + 5, "the first fire")[0]
        every_minute = [on_time(first)]
        assert every_minute[0] <= leading_at + MINUTE + SETTLE, "no fire at the first minute"
        completed("digest", every_minute[0])
        while len(every_minute) < 2 or not odd(every_minute[-1]):
            last = every_minute[-1]
            every_minute.append(fire_after("digest", last, last + MINUTE))
            completed("digest", every_minute[-1])

        # Every two minutes: the next fire on the even minute, none on the odd one after.
        due = service.update_schedule(job_id, "*/2 * * * *")
        even = every_minute[-1] + MINUTE
        assert due == even, "update_schedule names the next fire, the even minute"
        fire_after("digest", every_minute[-1], even)
        completed("digest", even)
        quiet_until("digest", even, even + MINUTE + SETTLE, "a fire on the odd minute")

        # Deleted: not even the next even minute, which the schedule would have fired.
        service.delete(job_id)
        assert service.recurring(job_id) is None
        quiet_until("digest", even, even + 2 * MINUTE + SETTLE, "a fire after the delete")

    slots = [*every_minute, even]
    assert [f["fire_time"] for f in fires("digest")] == slots
    assert [j["fire_time"] for j in jobs_of("digest")] == [s.isoformat() for s in slots]
    # Executions, not results: one start of the probe task per fire, in that fire's minute.
    starts = [row[4] for row in clean.rows("digest", "start")]
    assert len(starts) == len(slots), f"{len(starts)} runs for {len(slots)} fires"
    for slot, started in zip(slots, starts, strict=True):
        assert slot <= started <= slot + STARTS_WITHIN, f"the run of {slot} began {started}"
    assert clean.count("digest", "done") == len(slots)
