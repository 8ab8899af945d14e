"""The releaser thread polls adaptively: up to its cap while idle, fast once work arrives."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.jobs.releaser import FAST_INTERVAL_S, IDLE_INTERVAL_S, Releaser, hold
from app.jobs.service import JobService
from tests.servers import Broker


def hold_due_now(job_id: str) -> None:
    """Hold a ``demo.ping`` job due now, as a transactional enqueue commits it."""
    with engine().begin() as conn:
        hold(
            conn,
            job_id=job_id,
            handler="demo.ping",
            queue="default",
            args=[],
            kwargs={"message": "polled"},
            due=datetime.now(UTC),
            options={"queue": "default"},
        )


@pytest.fixture
def releaser(redis_broker: Broker) -> Iterator[Releaser]:
    """A releaser thread over an empty ledger, publishing to Redis."""
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events, workers"))
    releaser = Releaser(app)
    # This process's first publish connects to the broker (a second or two here): done
    # before the thread starts, so that the rounds measure polling alone.
    hold_due_now(str(uuid.uuid4()))
    assert releaser.release_due() == 1
    releaser.start()
    try:
        yield releaser
    finally:
        releaser.stop()


def delays(releaser: Releaser) -> list[float]:
    return [delay for _, delay in list(releaser.rounds)]


def wait_for_rounds(releaser: Releaser, count: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while len(releaser.rounds) < count:
        assert time.monotonic() < deadline, f"only {len(releaser.rounds)} rounds"
        time.sleep(0.01)


def test_idle_rounds_back_off_to_the_cap_and_work_brings_the_fast_interval_back(
    releaser: Releaser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.jobs.releaser")
    # Idle: 0.1, 0.2, 0.4, then the cap (the fixed interval the releaser had) for good.
    wait_for_rounds(releaser, 6)
    idle = delays(releaser)[:6]
    assert idle[:4] == pytest.approx([0.1, 0.2, 0.4, IDLE_INTERVAL_S])
    assert idle[3:] == [IDLE_INTERVAL_S] * 3
    assert all(published == 0 for published, _ in list(releaser.rounds))

    # A job due now: the next round publishes it, and the round after comes fast.
    job_id = str(uuid.uuid4())
    seen = len(releaser.rounds)
    hold_due_now(job_id)
    committed = time.monotonic()
    deadline = committed + 5
    while JobService().get(job_id)["release_at"] is not None:
        assert time.monotonic() < deadline, "the held job was never released"
        time.sleep(0.01)
    released_after_s = time.monotonic() - committed
    wait_for_rounds(releaser, seen + 4)
    rounds = list(releaser.rounds)[seen:]
    working = next(i for i, (published, _) in enumerate(rounds) if published)
    assert rounds[working] == (1, FAST_INTERVAL_S)
    assert all(published == 0 for published, _ in rounds[:working])
    # Then idle again: growing from the fast interval.
    assert [delay for _, delay in rounds[working + 1 : working + 3]] == pytest.approx([0.1, 0.2])
    # Released within the cap of its commit (with some slack for this shared machine).
    assert released_after_s < IDLE_INTERVAL_S + 0.3, released_after_s
    logged = [r.getMessage() for r in caplog.records if r.name == "app.jobs.releaser"]
    assert f"releaser: published 1, next round in {FAST_INTERVAL_S:.3f} s" in logged
    assert f"releaser: published 0, next round in {IDLE_INTERVAL_S:.3f} s" in logged
