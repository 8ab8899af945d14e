"""The adaptive polling policy: fast after work, growing while idle, never past its cap."""

from __future__ import annotations

import pytest

from app.polling import AdaptivePoll


def delays(poll: AdaptivePoll, found: str) -> list[float]:
    """The delays ``poll`` gives for a run of looks: ``w`` found work, ``.`` found none."""
    return [round(poll.next_delay(found_work=look == "w"), 6) for look in found]


@pytest.mark.parametrize(
    ("poll", "looks", "expected"),
    [
        # The releaser's policy: 50 ms after work, doubling to its 0.5 s cap.
        (
            AdaptivePoll(fast_s=0.05, cap_s=0.5, factor=2),
            "......",
            [0.1, 0.2, 0.4, 0.5, 0.5, 0.5],
        ),
        (
            AdaptivePoll(fast_s=0.05, cap_s=0.5, factor=2),
            "w..w.",
            [0.05, 0.1, 0.2, 0.05, 0.1],
        ),
        # Work found again and again keeps the fast interval.
        (AdaptivePoll(fast_s=0.05, cap_s=0.5), "wwww", [0.05, 0.05, 0.05, 0.05]),
        # The seeds' CDC ladder in geometric form: 50 ms, 200 ms, 800 ms, then its 5 s cap.
        (
            AdaptivePoll(fast_s=0.05, cap_s=5.0, factor=4),
            ".....",
            [0.2, 0.8, 3.2, 5.0, 5.0],
        ),
        # Patience: that many empty looks stay fast before the delay grows.
        (
            AdaptivePoll(fast_s=0.05, cap_s=5.0, factor=4, patience=5),
            "........",
            [0.05, 0.05, 0.05, 0.05, 0.05, 0.2, 0.8, 3.2],
        ),
        # A factor of 1 is a fixed interval.
        (AdaptivePoll(fast_s=0.5, cap_s=0.5, factor=1), "..w.", [0.5, 0.5, 0.5, 0.5]),
        # A cap that is a power of the factor away is reached exactly.
        (AdaptivePoll(fast_s=0.05, cap_s=0.4, factor=2), "....", [0.1, 0.2, 0.4, 0.4]),
    ],
)
def test_delay_after_each_look(poll: AdaptivePoll, looks: str, expected: list[float]) -> None:
    assert delays(poll, looks) == expected


def test_a_poller_idle_for_days_waits_the_cap_without_overflowing() -> None:
    poll = AdaptivePoll(fast_s=0.05, cap_s=0.5, factor=10)
    poll.empty = 10_000_000
    assert poll.next_delay(found_work=False) == 0.5
    assert poll.next_delay(found_work=True) == 0.05


def test_reset_forgets_the_idle_streak() -> None:
    poll = AdaptivePoll(fast_s=0.05, cap_s=0.5)
    delays(poll, "......")
    poll.reset()
    assert poll.next_delay(found_work=False) == 0.1


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"fast_s": 0, "cap_s": 1}, "fast_s"),
        ({"fast_s": 2, "cap_s": 1}, "cap_s"),
        ({"factor": 0.5}, "factor"),
        ({"patience": -1}, "patience"),
    ],
)
def test_a_policy_that_cannot_work_is_refused_naming_the_value(
    arguments: dict[str, float], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        AdaptivePoll(**arguments)  # type: ignore[arg-type]
