"""The bounded parallel consumer's own behaviour, in this process and without servers: at
most ``parallelism`` items at once, a full queue holding the fetcher back, a stop that
finishes what was taken, and failing items that are logged and counted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from app.services import base
from app.services.base import InvalidService, PollService, Service
from app.services.consumer import ConsumerService, ItemsFailed, consumer_service


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, type[Service]]]:
    """An empty registry for each test."""
    fresh: dict[str, type[Service]] = {}
    monkeypatch.setattr(base, "_registry", fresh)
    yield fresh


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


class Source:
    """``count`` items from a generator that records how many were taken from it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken = 0

    def __iter__(self) -> Iterator[int]:
        for item in range(self.count):
            self.taken += 1
            yield item


class Gate:
    """Handlers that wait until the gate opens, counting how many run at once."""

    def __init__(self, opened: bool = False) -> None:
        self.open = threading.Event()
        if opened:
            self.open.set()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.handled: list[int] = []

    def handle(self, item: int, hold_s: float = 0.0) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert self.open.wait(10), "the gate never opened"
            time.sleep(hold_s)
        finally:
            with self.lock:
                self.running -= 1
                self.handled.append(item)


def make(
    source: Iterable[int],
    handle: Callable[[int], object],
    parallelism: int,
    capacity: int,
    stop: threading.Event | None = None,
) -> ConsumerService[int]:
    """An instance of a consumer over ``source``, stopping when ``stop`` is set."""

    class Probe(ConsumerService[int]):
        name = "unit.consumer"

        def fetch(self) -> Iterable[int]:
            return source

        def handle(self, item: int) -> object:
            return handle(item)

    Probe.parallelism, Probe.capacity = parallelism, capacity
    probe = Probe()
    if stop is not None:
        probe._stop_check = stop.is_set
    return probe


class Iteration(threading.Thread):
    """One ``iterate()`` in a thread of its own, as the runtime's service thread runs it."""

    def __init__(self, service: Service) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.items: int | None = None

    def run(self) -> None:
        self.items = self.service.iterate()


def test_no_more_than_parallelism_items_are_handled_at_once() -> None:
    gate = Gate(opened=True)
    probe = make(Source(40), lambda item: gate.handle(item, hold_s=0.01), 3, 5)
    assert probe.iterate() == 40
    assert gate.most == 3, "never more than 3 at once, and 3 reached"
    assert sorted(gate.handled) == list(range(40)), "every item once"


@pytest.mark.parametrize(("parallelism", "capacity"), [(2, 3), (1, 0), (3, 1)])
def test_a_full_queue_holds_the_fetcher_back_before_it_takes_another_item(
    parallelism: int, capacity: int
) -> None:
    gate, source = Gate(), Source(20)
    iteration = Iteration(make(source, gate.handle, parallelism, capacity))
    iteration.start()
    wait_until(lambda: gate.running == parallelism, f"{parallelism} items under way")
    time.sleep(0.2)  # room for a fetcher that would run ahead
    assert source.taken == parallelism + capacity, "running plus waiting, and no more"
    assert iteration.is_alive(), "the fetcher is blocked, not done"
    gate.open.set()
    iteration.join(10)
    assert iteration.items == 20 and source.taken == 20
    assert gate.most == parallelism


def test_a_stop_finishes_the_items_taken_and_takes_no_more() -> None:
    gate, source, stop = Gate(), Source(20), threading.Event()
    iteration = Iteration(make(source, gate.handle, 2, 3, stop))
    iteration.start()
    wait_until(lambda: gate.running == 2 and source.taken == 5, "2 running and 3 waiting")
    stop.set()
    gate.open.set()
    iteration.join(10)
    assert not iteration.is_alive()
    assert iteration.items == 5, "the 2 running and the 3 queued finished, and count"
    assert sorted(gate.handled) == [0, 1, 2, 3, 4]
    assert source.taken == 5, "nothing taken from the source after the stop"


def fail_on(*bad: int) -> Callable[[int], None]:
    def handle(item: int) -> None:
        time.sleep(0.005)
        if item in bad:
            raise ValueError(f"item {item} is bad")

    return handle


def test_a_failing_item_is_logged_and_counted_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = make(range(10), fail_on(3, 7), 2, 2)
    with caplog.at_level(logging.ERROR, logger="app.services.consumer"):
        assert probe.iterate() == 8, "the iteration counts its successes only"
    failures = {r.getMessage(): r for r in caplog.records}
    for item in (3, 7):
        record = failures[f"service unit.consumer: item {item} failed"]
        assert record.exc_info is not None and f"item {item} is bad" in str(record.exc_info[1])
    assert probe.detail is not None
    assert probe.detail["succeeded"] == 8 and probe.detail["failed"] == 2, probe.detail
    assert probe.detail["last_failure"]["item"] in {"3", "7"}
    assert "ValueError" in probe.detail["last_failure"]["error"]
    # The next iteration adds to the totals on the row's detail.
    assert probe.iterate() == 8
    assert probe.detail["succeeded"] == 16 and probe.detail["failed"] == 4


def test_an_iteration_in_which_every_item_failed_is_an_error() -> None:
    probe = make(range(4), fail_on(0, 1, 2, 3), 2, 1)
    with pytest.raises(ItemsFailed, match=r"'unit.consumer': all 4 item\(s\) failed") as failed:
        probe.iterate()
    assert isinstance(failed.value.__cause__, ValueError)
    assert probe.detail is not None and probe.detail["failed"] == 4


def broken_after(count: int) -> Iterator[int]:
    yield from range(count)
    raise ConnectionError("the source went away")


def test_a_source_that_breaks_after_some_items_finishes_them_and_counts_them() -> None:
    gate = Gate(opened=True)
    assert make(broken_after(3), gate.handle, 2, 2).iterate() == 3
    assert sorted(gate.handled) == [0, 1, 2]


def test_a_source_that_breaks_before_any_item_succeeds_is_an_error() -> None:
    with pytest.raises(ConnectionError, match="the source went away"):
        make(broken_after(0), Gate(opened=True).handle, 2, 2).iterate()
    with pytest.raises(ConnectionError, match="the source went away"):
        make(broken_after(2), fail_on(0, 1), 2, 2).iterate()


@pytest.mark.parametrize("empty", [[], iter(())], ids=["list", "iterator"])
def test_an_empty_fetch_counts_nothing(empty: Iterable[int]) -> None:
    gate = Gate(opened=True)
    assert make(empty, gate.handle, 2, 2).iterate() == 0
    assert gate.handled == []


def test_a_decorated_function_is_the_handle_of_a_registered_poll_service() -> None:
    seen: list[str] = []

    def waiting() -> list[str]:
        return ["a", "b", "c"]

    @consumer_service(name="unit.mailer", fetch=waiting, parallelism=2, capacity=0, idle="30s")
    def send(item: str) -> None:
        seen.append(item)

    found = base.registered()["unit.mailer"]
    assert issubclass(found, PollService), "the runtime runs it as a poll loop"
    assert issubclass(found, ConsumerService)
    assert (found.parallelism, found.capacity, found.idle_s(5.0)) == (2, 0, 30.0)
    assert found().iterate() == 3 and sorted(seen) == ["a", "b", "c"]
    send("d")  # returned unchanged
    assert seen[-1] == "d"


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"parallelism": 0}, "parallelism must be an integer of at least 1, not 0"),
        ({"parallelism": 2.5}, "parallelism must be an integer"),
        ({"parallelism": True}, "parallelism must be an integer"),
        ({"capacity": -1}, "capacity must be an integer of at least 0, not -1"),
        ({"every": "1s"}, "a poll service has no `every`"),
    ],
)
def test_a_consumer_declared_wrongly_raises_invalid_service(
    attrs: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidService, match=reason):
        type("Bad", (ConsumerService,), {"name": "unit.bad", **attrs})
