"""How a service registers: a subclass or ``@service``, each checked when declared, and
what a poll service's iteration counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.services import base
from app.services.base import InvalidService, Kind, Mode, PollService, Service, service


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, type[Service]]]:
    """An empty registry for each test."""
    fresh: dict[str, type[Service]] = {}
    monkeypatch.setattr(base, "_registry", fresh)
    yield fresh


def test_a_subclass_with_a_name_registers_itself_and_its_bases_do_not() -> None:
    class Census(Service):
        name = "unit.census"
        every = "30s"
        mode = Mode.SINGLETON

        def iterate(self) -> int:
            return 1

    assert base.registered() == {"unit.census": Census}
    assert Census.interval_s() == 30.0 and Census.kind is Kind.INTERVAL


def test_a_decorated_function_is_registered_and_returned_unchanged() -> None:
    calls: list[object] = []

    @service(name="unit.tick", every=0.5, mode="singleton")
    def tick() -> int:
        calls.append("tick")
        return 3

    def find() -> list[int]:
        return [1, 2]

    @service(name="unit.drain", poll=find, idle="2m")
    def drain(work: list[int]) -> None:
        calls.append(work)

    found = base.registered()
    assert tick() == 3 and found["unit.tick"]().iterate() == 3
    assert found["unit.tick"].mode == "singleton" and found["unit.tick"].interval_s() == 0.5
    drainer = found["unit.drain"]
    assert issubclass(drainer, PollService) and drainer.idle_s(5.0) == 120.0
    assert drainer().iterate() == 2, "process() returned None: the work's length counts"
    assert calls == ["tick", "tick", [1, 2]]


def test_a_poll_service_counts_nothing_when_its_poll_finds_nothing() -> None:
    queue: list[list[str]] = [["a"], [], ["b", "c", "d"]]

    class Outbox(PollService[list[str]]):
        name = "unit.outbox"

        def poll(self) -> list[str] | None:
            return queue.pop(0) if queue else None

        def process(self, work: list[str]) -> int:
            return len(work) * 10

    outbox = Outbox()
    assert [outbox.iterate() for _ in range(4)] == [10, 0, 30, 0]
    assert Outbox.idle_s(5.0) == 5.0, "no idle of its own: the setting's"


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"name": "bad name"}, "a name is letters"),
        ({"name": "x" * 43}, "at most 42 characters"),
        ({"name": "unit.modeless", "mode": "everywhere"}, "mode 'everywhere' is not one of"),
        ({"name": "unit.never"}, "needs `every`"),
        ({"name": "unit.zero", "every": 0}, "must be a positive duration"),
        ({"name": "unit.words", "every": "soon"}, "every: duration 'soon'"),
    ],
)
def test_a_wrong_declaration_is_refused_naming_the_service_and_the_reason(
    attrs: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidService, match=reason) as refused:
        type("Wrong", (Service,), attrs)
    assert str(refused.value).startswith(f"service {attrs['name']!r}: ")
    assert isinstance(refused.value, ValueError)


def test_a_poll_service_with_an_interval_and_a_decorator_with_both_are_refused() -> None:
    with pytest.raises(InvalidService, match="a poll service has no `every`"):
        type("Both", (PollService,), {"name": "unit.both", "every": 1})
    with pytest.raises(InvalidService, match="exactly one of every="):
        service(name="unit.neither")
    with pytest.raises(InvalidService, match="exactly one of every="):
        service(name="unit.twice", every=1, poll=list)
    with pytest.raises(InvalidService, match="idle= is the wait of a poll loop"):
        service(name="unit.idle", every=1, idle=5)


def test_a_name_taken_by_another_service_is_refused() -> None:
    type("First", (Service,), {"name": "unit.same", "every": 1})
    with pytest.raises(InvalidService, match="the name is taken by"):
        type("Second", (Service,), {"name": "unit.same", "every": 1})
