"""How long a service waits: after errors in a row (exponential, capped, jittered down by
at most a quarter) and between polls (fast after work, growing while idle)."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from app.services.backoff import error_delay, poll_delays
from config.settings import ServicesSettings


@pytest.mark.parametrize(
    ("errors", "base_s", "cap_s", "jitter", "expected"),
    [
        (0, 1.0, 300.0, 0.0, 0.0),
        (1, 1.0, 300.0, 0.0, 1.0),
        (2, 1.0, 300.0, 0.0, 2.0),
        (5, 1.0, 300.0, 0.0, 16.0),
        (9, 1.0, 300.0, 0.0, 256.0),
        (10, 1.0, 300.0, 0.0, 300.0),
        (10_000, 1.0, 300.0, 0.0, 300.0),
        (3, 0.2, 30.0, 0.0, 0.8),
        (1, 1.0, 300.0, 1.0, 0.75),
        (4, 1.0, 300.0, 0.5, 7.0),
        (20, 1.0, 300.0, 1.0, 225.0),
        (1, 1.0, 300.0, 7.0, 0.75),
        (1, 1.0, 300.0, -3.0, 1.0),
    ],
)
def test_error_delay_doubles_per_error_up_to_the_cap_less_its_jitter(
    errors: int, base_s: float, cap_s: float, jitter: float, expected: float
) -> None:
    assert error_delay(errors, base_s, cap_s, jitter) == pytest.approx(expected)


def test_each_wait_is_longer_than_the_last_until_the_cap_whatever_the_jitter() -> None:
    draw = random.Random(7)
    for _ in range(500):
        waits = [error_delay(n, 0.2, 30.0, draw.random()) for n in range(1, 8)]
        assert all(later > earlier for earlier, later in pairwise(waits)), waits


def test_the_default_settings_fail_a_service_after_about_eight_minutes_of_errors() -> None:
    conf = ServicesSettings()
    waits = [
        error_delay(n, conf.error_backoff_s, conf.error_backoff_max_s)
        for n in range(1, conf.max_consecutive_errors)
    ]
    assert waits[0] == 1.0 and waits[-1] == 256.0
    assert sum(waits) == 511.0


def test_a_poll_loop_polls_fast_after_work_and_longer_after_each_empty_poll() -> None:
    delays = poll_delays(fast_s=0.05, idle_s=1.0)
    found = [True, False, False, False, False, False, False, True, False]
    waits = [delays.next_delay(work) for work in found]
    assert waits == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 0.05, 0.1])


def test_an_idle_interval_below_the_fast_one_is_the_only_wait() -> None:
    delays = poll_delays(fast_s=0.5, idle_s=0.2)
    assert [delays.next_delay(work) for work in (True, False, False)] == [0.2, 0.2, 0.2]
