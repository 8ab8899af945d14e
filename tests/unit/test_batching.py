"""Auto-batching in a process: batches of at most N or after T, a bad item failing alone,
a full buffer blocking the producer, the last partial batch handed over on close."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter

import pytest

from app.batching import Batcher, BatcherClosed, BatchResultMismatch, handle_batch


class Sink:
    """A batch handler that records each batch it is given, and fails on ``bad`` items."""

    def __init__(self, bad: set[int] | None = None, pause_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.failures: list[tuple[int, str]] = []
        self.bad = bad or set()
        self.pause_s = pause_s
        self.lock = threading.Lock()

    def __call__(self, batch: list[int]) -> list[str]:
        time.sleep(self.pause_s)
        if self.bad & set(batch):
            raise ValueError(f"bad items {sorted(self.bad & set(batch))}")
        with self.lock:
            self.batches.append(list(batch))
        return [f"ok:{item}" for item in batch]

    def failed(self, item: int, error: BaseException) -> None:
        self.failures.append((item, str(error)))

    @property
    def handled(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


def test_a_good_batch_is_handled_once_with_one_result_per_item() -> None:
    sink = Sink()
    outcomes = handle_batch([1, 2, 3], sink)
    assert sink.batches == [[1, 2, 3]]
    assert [(o.item, o.result, o.ok) for o in outcomes] == [
        (1, "ok:1", True),
        (2, "ok:2", True),
        (3, "ok:3", True),
    ]


def test_a_failed_batch_is_tried_item_by_item_and_only_the_bad_one_fails() -> None:
    sink = Sink(bad={2})
    outcomes = handle_batch([1, 2, 3], sink)
    assert sink.batches == [[1], [3]], "the batch failed, then each item alone"
    assert [o.ok for o in outcomes] == [True, False, True]
    assert str(outcomes[1].error) == "bad items [2]"


def test_a_batch_of_one_that_fails_is_not_tried_twice() -> None:
    calls: list[list[int]] = []

    def handle(batch: list[int]) -> None:
        calls.append(batch)
        raise RuntimeError("no")

    [outcome] = handle_batch([7], handle)
    assert calls == [[7]]
    assert isinstance(outcome.error, RuntimeError)


def test_a_handler_returning_the_wrong_number_of_results_fails_its_items_clearly() -> None:
    outcomes = handle_batch([1, 2], lambda batch: "done")
    assert all(isinstance(o.error, BatchResultMismatch) for o in outcomes)
    assert "one result per item" in str(outcomes[0].error)
    assert [o.result for o in handle_batch([1, 2], lambda batch: None)] == [None, None]


def test_ten_thousand_items_each_handled_once_in_batches_of_at_most_n() -> None:
    sink = Sink()
    batcher = Batcher(sink, size=100, wait_s=0.05, capacity=500)
    producers = [
        threading.Thread(
            target=lambda start=start: [batcher.put(i) for i in range(start, start + 2500)]
        )
        for start in range(0, 10_000, 2500)
    ]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join()
    assert batcher.close(timeout=30)
    assert Counter(sink.handled) == Counter(range(10_000)), "every item exactly once"
    assert max(len(batch) for batch in sink.batches) <= 100
    assert batcher.largest == 100, "a steady stream fills batches"
    assert (batcher.handled, batcher.failed) == (10_000, 0)


def test_a_trickle_is_handed_over_after_the_wait_not_when_a_batch_fills() -> None:
    sink = Sink()
    with Batcher(sink, size=100, wait_s=0.1) as batcher:
        for item in range(3):
            batcher.put(item)
            deadline = time.monotonic() + 5
            while len(sink.handled) <= item and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sink.handled == list(range(item + 1)), "handed over alone, by time"
    assert sink.batches == [[0], [1], [2]]


def test_a_full_buffer_blocks_the_producer_and_drops_nothing() -> None:
    release = threading.Event()

    def slow(batch: list[int]) -> None:
        release.wait(10)
        sink.batches.append(batch)

    sink = Sink()
    batcher = Batcher(slow, size=2, wait_s=0.01, capacity=4)
    batcher.put(0)
    batcher.put(1)
    time.sleep(0.2)  # [0, 1] is being handled, and waits for the release
    for item in range(2, 6):
        batcher.put(item, timeout=1)  # the buffer holds four
    with pytest.raises(queue.Full):
        batcher.put(6, timeout=0.3)
    blocked = threading.Thread(target=batcher.put, args=(6,))
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive(), "the producer waits for room"
    release.set()
    blocked.join(5)
    assert not blocked.is_alive()
    assert batcher.close(timeout=10)
    assert sorted(sink.handled) == list(range(7)), "nothing dropped"


def test_close_hands_over_the_last_partial_batch_and_refuses_more() -> None:
    sink = Sink()
    batcher = Batcher(sink, size=100, wait_s=60)
    for item in range(7):
        batcher.put(item)
    assert batcher.close(timeout=10)
    assert sink.batches == [list(range(7))], "one partial batch, not lost, not waited for"
    with pytest.raises(BatcherClosed, match="is closed"):
        batcher.put(8)


def test_a_bad_item_fails_alone_and_is_reported_with_its_error() -> None:
    sink = Sink(bad={13})
    with Batcher(sink, size=10, wait_s=60, on_failure=sink.failed) as batcher:
        for item in range(20):
            batcher.put(item)
    assert sorted(sink.handled) == [item for item in range(20) if item != 13]
    assert sink.failures == [(13, "bad items [13]")]
    assert (batcher.handled, batcher.failed) == (19, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "at least 1"),
        ({"size": 10, "capacity": 5}, "must hold a whole batch"),
        ({"wait_s": 0}, "positive"),
    ],
)
def test_a_wrong_batcher_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Batcher(lambda batch: None, **kwargs)  # type: ignore[arg-type]
