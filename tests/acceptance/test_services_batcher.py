"""Auto-batching in a real ``python -m app services`` process: a service feeds a
:class:`~app.batching.Batcher`; every item is handled once, in batches of at most N, a
poisoned item fails alone, and SIGTERM hands over the last partial batch."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.acceptance import probe_batcher, probe_batches
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.probe_tasks import connect
from tests.acceptance.test_services import Services, forget_services

pytestmark = pytest.mark.acceptance

MODULES = '["tests.acceptance.probe_batcher"]'


def feeder(host: str, wait_s: float) -> Services:
    env = {"CONVEYOR_SERVICES__MODULES": MODULES, "CONVEYOR_TEST_BATCH_WAIT_S": str(wait_s)}
    return Services(host, "probe.feeder", env, heartbeat_interval_s=0.5)


@pytest.fixture
def clean(effects: Effects) -> Iterator[None]:
    forget_services()
    with connect() as conn:
        conn.execute(probe_batches.DDL)
    yield
    forget_services()


def handled() -> list[tuple[str, str, int]]:
    """(key, batch, size) of each item handled, oldest first."""
    with connect() as conn:
        return conn.execute(
            "SELECT key, batch, size FROM probe_batch_rows WHERE key LIKE 'feed%' ORDER BY id"
        ).fetchall()


def test_ten_thousand_items_each_once_in_batches_of_at_most_n_the_poisoned_alone(
    clean: None,
) -> None:
    poisoned = (77, 5000)
    probe_batcher.fill(10_000, poison=poisoned)
    with feeder("h-batcher", wait_s=0.2) as svc:
        wait_for(lambda: len(handled()) == 10_000 - 2, 120, "every good item handled")
        svc.signal(signal.SIGTERM)
        assert svc.exit_code(30) == 0, svc.output()[-3000:]
        log = svc.output()
    done = handled()
    expected = [f"feed{i:05d}" for i in range(1, 10_001) if i not in poisoned]
    assert Counter(key for key, *_ in done) == Counter(expected), "each good item once"
    sizes = Counter(batch for _, batch, _ in done)
    assert max(sizes.values()) <= probe_batcher.SIZE
    assert len(sizes) < 1000, f"{len(sizes)} batches for 10,000 items: not batched"
    for item in poisoned:
        assert f"batch item ({item}, True) failed: ValueError: item {item} is poisoned" in log


def test_sigterm_hands_over_the_last_partial_batch(clean: None) -> None:
    probe_batcher.fill(7)
    with feeder("h-partial", wait_s=600) as svc:
        wait_for(lambda: _taken() == 7, 30, "the feeder to put the seven items into its batcher")
        assert handled() == [], "a batch of 100, or ten minutes: nothing yet"
        svc.signal(signal.SIGTERM)
        assert svc.exit_code(30) == 0, svc.output()[-3000:]
    done = handled()
    assert sorted(key for key, *_ in done) == [f"feed{i:05d}" for i in range(1, 8)]
    assert {size for *_, size in done} == {7}, "one batch of seven"


def _taken() -> int:
    with connect() as conn:
        row = conn.execute("SELECT count(*) FROM probe_feed WHERE taken").fetchone()
    assert row is not None
    return int(row[0])
