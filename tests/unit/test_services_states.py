"""A service's state after each outcome (pure transitions), and what readiness makes of
the rows (down, degraded, silent)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.services.readiness import judge
from app.services.runner import MAX_ERROR_LENGTH, describe
from app.services.states import (
    ServiceState,
    Status,
    errored,
    failed,
    leased,
    stopped,
    succeeded,
)

AT = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
RUNNING, DEGRADED, FAILED = ServiceState.RUNNING, ServiceState.DEGRADED, ServiceState.FAILED
STOPPED, STANDBY = ServiceState.STOPPED, ServiceState.STANDBY


def outcomes(steps: str, max_errors: int = 3, start: Status | None = None) -> list[Status]:
    """The status after each step: ``o`` a success of 2 items, ``x`` an error, ``+``/``-``
    the lease gained/lost, ``s`` a stop."""
    status = start or Status()
    seen = []
    for step in steps:
        if step == "o":
            status = succeeded(status, 2, AT)
        elif step == "x":
            status = errored(status, "boom", AT, max_errors)
        elif step in "+-":
            status = leased(status, step == "+")
        elif step == "s":
            status = stopped(status)
        seen.append(status)
    return seen


@pytest.mark.parametrize(
    ("steps", "states", "errors"),
    [
        ("o", [RUNNING], 0),
        ("x", [DEGRADED], 1),
        ("xx", [DEGRADED, DEGRADED], 2),
        ("xxx", [DEGRADED, DEGRADED, FAILED], 3),
        ("xxo", [DEGRADED, DEGRADED, RUNNING], 0),
        ("xxoxx", [DEGRADED, DEGRADED, RUNNING, DEGRADED, DEGRADED], 2),
        ("xxxo", [DEGRADED, DEGRADED, FAILED, FAILED], 3),
        ("xxxs", [DEGRADED, DEGRADED, FAILED, FAILED], 3),
        ("os", [RUNNING, STOPPED], 0),
        ("osox", [RUNNING, STOPPED, STOPPED, STOPPED], 0),
        ("-+", [STANDBY, RUNNING], 0),
        ("x-+", [DEGRADED, STANDBY, DEGRADED], 1),
        ("-s+", [STANDBY, STOPPED, STOPPED], 0),
    ],
)
def test_each_outcome_moves_the_service_to_its_state(
    steps: str, states: list[ServiceState], errors: int
) -> None:
    seen = outcomes(steps)
    assert [status.state for status in seen] == states
    assert seen[-1].consecutive_errors == errors


def test_successes_count_items_and_errors_keep_the_last_one() -> None:
    last = outcomes("oxo")[-1]
    assert last.items_processed == 4 and last.last_success_at == AT
    assert last.last_error == "boom" and last.last_error_at == AT
    assert succeeded(Status(), -5, AT).items_processed == 0


def test_a_broken_runtime_fails_the_service_whatever_its_count() -> None:
    status = failed(Status(), "RuntimeError: thread died", AT)
    assert status.state is FAILED and status.last_error == "RuntimeError: thread died"


def row(name: str, host: str, state: str, mode: str = "every_host", **extra: Any) -> dict[str, Any]:
    alive = extra.pop("alive", True)
    active = alive and state in ("running", "degraded") and mode == "every_host"
    return {"name": name, "host": host, "state": state, "mode": mode, "alive": alive,
            "active": active, "holder": None, **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "down", "degraded", "silent"),
    [
        ([], [], [], []),
        ([row("a", "h1", "running")], [], [], []),
        ([row("a", "h1", "degraded")], [], ["a@h1"], []),
        ([row("a", "h1", "degraded", alive=False)], [], [], ["a@h1"]),
        ([row("a", "h1", "running", alive=False)], [], [], ["a@h1"]),
        ([row("a", "h1", "stopped", alive=False)], [], [], []),
        # Singletons: red when failed and no host holds the lease.
        ([row("s", "h1", "failed", "singleton")], ["s"], [], []),
        ([row("s", "h1", "failed", "singleton"), row("s", "h2", "standby", "singleton")],
         ["s"], [], []),
        ([row("s", "h1", "failed", "singleton"),
          row("s", "h2", "running", "singleton", holder="h2:1:a")], [], [], []),
        ([row("s", "h1", "stopped", "singleton")], [], [], []),
        # Every host: red when failed and no live host runs it.
        ([row("a", "h1", "failed")], ["a"], [], []),
        ([row("a", "h1", "failed"), row("a", "h2", "running")], [], [], []),
        ([row("a", "h1", "failed"), row("a", "h2", "running", alive=False)], ["a"], [], ["a@h2"]),
        ([row("a", "h1", "failed"), row("a", "h2", "stopped")], ["a"], [], []),
        ([row("a", "h1", "failed"), row("b", "h1", "degraded")], ["a"], ["b@h1"], []),
    ],
)  # fmt: skip
def test_readiness_is_red_for_a_failed_service_that_nothing_runs_and_names_degraded_ones(
    rows: list[dict[str, Any]], down: list[str], degraded: list[str], silent: list[str]
) -> None:
    verdict = judge(rows)
    assert list(verdict.down) == down
    assert verdict.degraded == degraded
    assert verdict.silent == silent


def test_a_down_service_says_where_it_failed_and_why_nothing_runs_it() -> None:
    verdict = judge([row("s", "h1", "failed", "singleton"), row("a", "h2", "failed")])
    assert verdict.down == {
        "a": "failed on h2, and no live host runs it",
        "s": "failed on h1, and no host holds its lease",
    }


def test_an_error_is_kept_as_text_postgresql_can_store_and_bounded() -> None:
    assert describe(ValueError("bad\x00byte")) == "ValueError: bad\\x00byte"
    assert len(describe(RuntimeError("x" * 10_000))) == MAX_ERROR_LENGTH
