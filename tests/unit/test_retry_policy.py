"""ConveyorTask's retry policy: exponential backoff with full jitter, drawn by Celery.

A plain ``@app.task`` is a ConveyorTask; its policy comes from the settings when
the app binds it (``ping`` sets none of its own).
"""

from __future__ import annotations

import statistics

from celery.utils.time import get_exponential_backoff_interval

from app.celery import app
from app.errors import PermanentError, TransientError
from app.jobs.task import ConveyorTask
from config.settings import get_settings
from tasks.demo import ping
from tasks.health import probe


def delays(retry: int, samples: int = 2000) -> list[int]:
    """Countdowns Celery's autoretry draws for ``retry`` under ConveyorTask's policy."""
    return [
        get_exponential_backoff_interval(
            factor=ping.retry_backoff,
            retries=retry,
            maximum=ping.retry_backoff_max,
            full_jitter=ping.retry_jitter,
        )
        for _ in range(samples)
    ]


def test_backoff_caps_double_with_each_retry_and_waits_are_jittered() -> None:
    base = ping.retry_backoff
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
    assert max(delays(30, samples=200)) <= ping.retry_backoff_max


def test_only_transient_errors_are_retried_automatically() -> None:
    assert ConveyorTask.autoretry_for == (TransientError,)
    assert not issubclass(PermanentError, TransientError)
    assert isinstance(ping, ConveyorTask), "a plain @app.task is a ConveyorTask"
    assert ping.autoretry_for == (TransientError,)


def test_retry_policy_comes_from_the_settings_unless_a_task_sets_its_own() -> None:
    worker = get_settings().worker
    assert (ping.max_retries, ping.retry_backoff, ping.retry_backoff_max) == (
        worker.max_retries,
        worker.retry_backoff_s,
        worker.retry_backoff_max_s,
    )
    assert probe.max_retries == 2, "health.probe sets its own"
    assert app.conf.conveyor_task_max_retries == worker.max_retries


def test_a_task_that_declares_retrying_for_ever_keeps_it() -> None:
    # Celery's chord_unlock polls until its chord is done: max_retries=None is its own.
    app.loader.import_default_modules()
    assert app.tasks["celery.chord_unlock"].max_retries is None
