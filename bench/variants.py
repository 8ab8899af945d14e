"""The three ways the benchmark runs the same no-op task.

Each variant names the Celery app a worker loads (``celery -A <target>``) and
the queue it consumes. Queues are benchmark-only, one per app, so that no
variant redeclares another's queue with different arguments and no test that
purges Conveyor's queues ever meets a benchmark message.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

#: Queue of both bare variants (see :mod:`bench.bare`).
BARE_QUEUE = "bench_bare"
#: Queue of the Conveyor variant (see :mod:`bench.conveyor`).
CONVEYOR_QUEUE = "bench_conveyor"
#: Registered name of the no-op task in every variant.
TASK_NAME = "bench.noop"


@dataclass(frozen=True)
class Variant:
    """One way of running the no-op task."""

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

#: Every variant, in the order each run measures them.
VARIANTS: tuple[Variant, ...] = (BARE, BARE_PG, CONVEYOR)
BY_NAME = {variant.name: variant for variant in VARIANTS}
