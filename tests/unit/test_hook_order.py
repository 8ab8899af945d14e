"""The order in which the installed Celery calls a task's hooks, which app.jobs.delivery
relies on: the outcome is settled in ``on_success``/``on_failure`` and the job let go
of in ``after_return``, all before the worker acknowledges; ``Task.retry`` runs before
``on_retry``, and no ``after_return`` follows a retry; an ``Ignore`` from ``__call__``
ends the delivery with no further hook.

The tracer that ``Task.apply`` runs is the one a worker's pool process runs
(``celery.app.trace.build_tracer``), so these tables hold for real deliveries too.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery, Task
from celery.exceptions import Ignore

calls: list[str] = []


class Recorded(Task):  # type: ignore[misc]
    """A plain Celery task that notes each hook as Celery calls it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        calls.append("__call__")
        if kwargs.get("ignore"):
            raise Ignore()
        return super().__call__(*args, **kwargs)

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        calls.append("retry")
        return super().retry(*args, **kwargs)

    def on_success(self, *args: Any) -> None:
        calls.append("on_success")

    def on_retry(self, *args: Any) -> None:
        calls.append("on_retry")

    def on_failure(self, *args: Any) -> None:
        calls.append("on_failure")

    def after_return(self, *args: Any) -> None:
        calls.append("after_return")


celery_app = Celery("hook-order", task_cls=Recorded, set_as_current=False)
celery_app.conf.update(task_store_eager_result=False, result_backend="disabled://")


@celery_app.task(bind=True, max_retries=1)
def body(self: Task, outcome: str = "ok", ignore: bool = False) -> str:
    calls.append("run")
    if outcome == "retry" and not self.request.retries:
        raise self.retry(countdown=0)
    if outcome == "fail":
        raise ValueError("failed on purpose")
    return outcome


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["__call__", "run", "on_success", "after_return"]),
        ({"outcome": "fail"}, ["__call__", "run", "on_failure", "after_return"]),
        # No after_return after a retry: RETRY is one of Celery's IGNORE_STATES.
        ({"outcome": "retry"}, ["__call__", "run", "retry", "on_retry"]),
        ({"ignore": True}, ["__call__"]),
    ],
    ids=["success", "failure", "retry", "ignored"],
)
def test_celery_calls_the_hooks_a_delivery_relies_on_in_this_order(
    kwargs: dict[str, Any], expected: list[str]
) -> None:
    calls.clear()
    body.apply(kwargs=kwargs, throw=False)
    if kwargs.get("outcome") != "retry":
        assert calls == expected
        return
    # Outside a worker, the next attempt then runs inline (a worker publishes it).
    assert calls[: len(expected)] == expected, calls
    assert calls[len(expected) :] == ["__call__", "run", "on_success", "after_return"]
