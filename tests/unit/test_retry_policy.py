"""ConveyorTask's retry policy: exponential backoff with full jitter, drawn by Celery."""

from __future__ import annotations

import statistics

from celery.utils.time import get_exponential_backoff_interval

from app.errors import PermanentError, TransientError
from tasks.base import ConveyorTask
from tasks.demo import ping


def delays(retry: int, samples: int = 2000) -> list[int]:
    """Countdowns Celery's autoretry draws for ``retry`` under ConveyorTask's policy."""
    return [
        get_exponential_backoff_interval(
            factor=ConveyorTask.retry_backoff,
            retries=retry,
            maximum=ConveyorTask.retry_backoff_max,
            full_jitter=ConveyorTask.retry_jitter,
        )
        for _ in range(samples)
    ]


def test_backoff_caps_double_with_each_retry_and_waits_are_jittered() -> None:
    base = ConveyorTask.retry_backoff
    means = []
    for retry in range(4):
        drawn = delays(retry)
        cap = base * 2**retry
        assert max(drawn) <= cap
        assert min(drawn) == 0, "full jitter draws from zero"
        assert len(set(drawn)) == cap + 1, "every whole second up to the cap is drawn"
        means.append(statistics.mean(drawn))
    assert means == sorted(means), means


def test_backoff_never_exceeds_its_ceiling() -> None:
    assert max(delays(30, samples=200)) <= ConveyorTask.retry_backoff_max


def test_only_transient_errors_are_retried_automatically() -> None:
    assert ConveyorTask.autoretry_for == (TransientError,)
    assert not issubclass(PermanentError, TransientError)
    assert ping.max_retries == ConveyorTask.max_retries
