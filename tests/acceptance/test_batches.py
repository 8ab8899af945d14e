"""Batch tasks in a real worker, on each broker: every job handled once, in batches of at
most N or after T, a bad job failing alone, the buffer bounded, the last batch flushed
on SIGTERM."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from amqp.exceptions import ChannelError

from app.celery import app
from app.errors import JobNotFound
from app.jobs.service import JobService
from tests.acceptance import probe_batches
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.probe_tasks import connect
from tests.acceptance.workers import PROBES, Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

MODULES = json.dumps([*json.loads(PROBES), probe_batches.__name__])


@pytest.fixture
def rows(effects: Effects) -> Iterator[None]:
    """An empty batch table, beside the empty ledger ``effects`` leaves."""
    with connect() as conn:
        conn.execute(probe_batches.DDL)
    yield


def handled(prefix: str = "") -> list[tuple[str, str, int, int]]:
    """(key, batch, size, attempt) of each item handled, oldest first."""
    with connect() as conn:
        return conn.execute(
            "SELECT key, batch, size, attempt FROM probe_batch_rows WHERE key LIKE %s ORDER BY id",
            (prefix + "%",),
        ).fetchall()


def worker(broker: Broker, concurrency: int = 2) -> Worker:
    """A worker of the default queue that also knows the batch probes."""
    started = Worker(broker.url, queues="default", concurrency=concurrency)
    started.env["CONVEYOR_TASK_MODULES"] = MODULES
    return started


def waiting(queue: str = "default") -> int:
    """Messages waiting in ``queue`` on the broker (not yet delivered to a worker)."""
    with app.connection_for_read() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
        except ChannelError:  # Redis keeps no empty list: no queue is an empty one
            return 0


def status(job_id: str) -> str | None:
    """The job's status in the ledger; None before its row is written."""
    try:
        return str(JobService(app).get(job_id)["status"])
    except JobNotFound:
        return None


def statuses(ids: list[str]) -> Counter[str | None]:
    return Counter(status(job_id) for job_id in ids)


def test_ten_thousand_jobs_each_handled_once_in_batches_of_at_most_n(
    broker: Broker, rows: None
) -> None:
    keys = [f"bulk{index:05d}" for index in range(10_000)]
    with worker(broker):
        ids = [probe_batches.batch_insert.delay(key).id for key in keys]
        wait_for(lambda: len(handled("bulk")) >= len(keys), 240, "10,000 items handled")
        time.sleep(1)  # anything handled twice would show up now
        done = handled("bulk")
        wait_for(lambda: statuses(ids) == Counter(completed=len(ids)), 60, "every job completed")
    assert Counter(key for key, *_ in done) == Counter(keys), "each item exactly once"
    sizes = Counter(batch for _, batch, _, _ in done)
    assert max(sizes.values()) <= probe_batches.FLUSH_EVERY
    assert max(size for *_, size, _ in done) <= probe_batches.FLUSH_EVERY
    assert len(sizes) < len(keys) / 5, f"{len(sizes)} batches for {len(keys)} items: not batched"
    job = JobService(app).get(ids[0])
    assert job["handler"] == "probe.batch_insert"
    assert job["result"] == "done:bulk00000"
    assert job["payload"]["args"] == ["bulk00000"]


def test_a_trickle_is_flushed_by_time_one_job_at_a_time(broker: Broker, rows: None) -> None:
    with worker(broker, concurrency=1):
        for index in range(4):
            sent = time.monotonic()
            probe_batches.batch_insert.delay(f"trickle{index}")
            wait_for(lambda i=index: len(handled("trickle")) == i + 1, 10, f"trickle {index}")
            # flush_interval is 0.3 s; a batch of 50 never fills from a trickle.
            assert time.monotonic() - sent < 5
    assert [size for *_, size, _ in handled("trickle")] == [1, 1, 1, 1]


def test_a_poisoned_job_fails_alone_and_a_transient_one_is_retried_alone(
    broker: Broker, rows: None
) -> None:
    service = JobService(app)
    with worker(broker, concurrency=1):
        # Eleven jobs published at once form one batch (the worker flushes after 0.3 s).
        good = [probe_batches.batch_insert.delay(f"mix{index:02d}").id for index in range(9)]
        poisoned = probe_batches.batch_insert.delay("mixpoison", poison=True).id
        flaky = probe_batches.batch_insert.delay("mixflaky", fail_first=True).id
        wait_for(lambda: status(poisoned) == "dead", 60, "the poisoned job dead")
        wait_for(lambda: status(flaky) == "completed", 60, "the flaky job retried")
        wait_for(lambda: statuses(good) == Counter(completed=9), 30, "the good jobs completed")
    done = handled("mix")
    assert Counter(key for key, *_ in done) == Counter(
        [f"mix{index:02d}" for index in range(9)] + ["mixflaky"]
    ), "every good job once, the poisoned one never"
    assert service.get(poisoned)["last_error"] == "PermanentError: mixpoison is poisoned"
    assert service.get(poisoned)["attempts"] == 1, "a permanent error is not retried"
    flaky_job = service.get(flaky)
    assert flaky_job["attempts"] == 2
    assert [attempt for key, _, _, attempt in done if key == "mixflaky"] == [2]
    assert all(service.get(job_id)["attempts"] == 1 for job_id in good), "only the flaky retried"


def test_a_job_that_kills_its_process_takes_its_batch_down_once_then_all_run_alone(
    broker: Broker, rows: None
) -> None:
    keys = [f"crash{index}" for index in range(5)]
    with worker(broker, concurrency=1):
        ids = [probe_batches.batch_insert.delay(key).id for key in keys[:4]]
        ids.append(probe_batches.batch_insert.delay(keys[4], kill_first=True).id)
        wait_for(lambda: statuses(ids) == Counter(completed=5), 120, "five jobs completed")
    done = handled("crash")
    assert sorted(key for key, *_ in done) == keys, "each job once, the killer too"
    assert {size for *_, size, _ in done} == {1}, "delivered again: each alone"
    assert all(JobService(app).get(job_id)["attempts"] == 1 for job_id in ids)


def test_a_slow_worker_holds_a_bounded_number_of_jobs_and_the_broker_keeps_the_rest(
    broker: Broker, rows: None
) -> None:
    total = 600
    with worker(broker, concurrency=1):
        for index in range(total):
            probe_batches.batch_slow.delay(f"slow{index:03d}")
        held: list[int] = []
        # Batches of 20 take half a second each: the worker falls far behind.
        while len(handled("slow")) < total / 2:
            held.append(total - waiting() - len(handled("slow")))
            time.sleep(0.2)
        wait_for(lambda: len(handled("slow")) == total, 120, "every slow item")
    # capacity 40, plus the worker's own prefetch window (one per pool process), plus
    # the batch being written as this was measured.
    assert max(held) <= 40 + 1 + 20, held
    assert Counter(key for key, *_ in handled("slow")) == Counter(
        f"slow{index:03d}" for index in range(total)
    )


def test_sigterm_hands_over_the_last_partial_batch(broker: Broker, rows: None) -> None:
    running = worker(broker, concurrency=1).start()
    try:
        ids = [probe_batches.batch_patient.delay(f"last{index}").id for index in range(7)]
        wait_for(lambda: waiting() == 0, 30, "the worker to buffer the seven jobs")
        time.sleep(0.5)
        assert handled("last") == [], "a batch of 100 or ten minutes: nothing yet"
        assert running.terminate(60) == 0
    finally:
        running.kill()
    done = handled("last")
    assert sorted(key for key, *_ in done) == [f"last{index}" for index in range(7)]
    assert {size for *_, size, _ in done} == {7}, "one batch of seven"
    assert statuses(ids) == Counter(completed=7)
