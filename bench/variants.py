"""The ways the benchmark runs the same no-op work.

Each variant names the Celery app a worker loads (``celery -A <target>``), the
queue it consumes and the task it sends. Queues are benchmark-only, one per
task, so that no variant redeclares another's queue with different arguments
and no test that purges Conveyor's queues ever meets a benchmark message.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

#: Queue of both bare variants (see :mod:`bench.bare`).
BARE_QUEUE = "bench_bare"
#: Queue of the Conveyor variants that send one task per item (see :mod:`bench.conveyor`).
CONVEYOR_QUEUE = "bench_conveyor"
#: Queue of the batch task (see :mod:`bench.batched`).
BATCHED_QUEUE = "bench_conveyor_batched"
#: Registered name of the no-op task in every one-task-per-item variant.
TASK_NAME = "bench.noop"
#: Registered name of the no-op batch task: one item per ``delay()``.
BATCH_TASK_NAME = "bench.noop_batch"


@dataclass(frozen=True)
class Variant:
    """One way of running the no-op work."""

    #: Short stable name, used on the command line and in the report.
    name: str
    #: ``module:attribute`` of the Celery app, as given to ``celery -A``.
    target: str
    #: The queue its worker consumes.
    queue: str
    #: True when each task's result is written to PostgreSQL.
    result_backend: bool
    #: One line for the report.
    summary: str
    #: The task each item is sent to.
    task: str = TASK_NAME
    #: True when a web process serves ``/metrics`` and the trial scrapes it throughout.
    scraped: bool = False

    def load(self) -> Any:
        """Import and return the Celery app (reads the ``CONVEYOR_*`` environment)."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute or "app")


BARE = Variant(
    "bare-no-backend",
    "bench.bare:app",
    BARE_QUEUE,
    result_backend=False,
    summary="plain Celery, Conveyor's reliability settings, no result backend",
)
BARE_PG = Variant(
    "bare-pg-backend",
    "bench.bare:app_pg",
    BARE_QUEUE,
    result_backend=True,
    summary="plain Celery, Conveyor's reliability settings, results in PostgreSQL",
)
CONVEYOR = Variant(
    "conveyor",
    "bench.conveyor:app",
    CONVEYOR_QUEUE,
    result_backend=True,
    summary="Conveyor's app and a plain @app.task (a ConveyorTask), results in PostgreSQL",
)
CONVEYOR_SCRAPED = Variant(
    "conveyor-scraped",
    "bench.conveyor:app",
    CONVEYOR_QUEUE,
    result_backend=True,
    summary="as conveyor, while a web process's /metrics is scraped every --scrape-interval",
    scraped=True,
)
CONVEYOR_BATCHED = Variant(
    "conveyor-batched",
    "bench.batched:app",
    BATCHED_QUEUE,
    result_backend=True,
    summary="as conveyor, the same work as a BatchTask: batches of 100, one job per item",
    task=BATCH_TASK_NAME,
)

#: Every variant, in the order each run measures them.
VARIANTS: tuple[Variant, ...] = (BARE, BARE_PG, CONVEYOR, CONVEYOR_SCRAPED, CONVEYOR_BATCHED)
BY_NAME = {variant.name: variant for variant in VARIANTS}

#: The throughput ratios the report prints (numerator, denominator), each one when both
#: variants were measured. Every variant counts one probe sample per item (a task, or an
#: item of a batch), so the batched ratio compares items per second.
RATIOS: tuple[tuple[Variant, Variant], ...] = (
    (CONVEYOR, BARE),
    (CONVEYOR, BARE_PG),
    (CONVEYOR_SCRAPED, BARE),
    (CONVEYOR_SCRAPED, CONVEYOR),
    (CONVEYOR_BATCHED, CONVEYOR),
)
