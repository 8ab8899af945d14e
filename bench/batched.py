"""Conveyor's own app with the no-op work as a batch task, on a benchmark-only queue.

``celery -A bench.batched worker -Q bench_conveyor_batched`` runs the app of
:mod:`bench.conveyor` plus :func:`noop_batch`, a :class:`~app.jobs.batches.BatchTask`:
each ``delay()`` is a job of its own (its ledger row, its claim, its outcome), and
the worker's main process hands them to the pool in batches of :data:`FLUSH_EVERY`.
The function records one probe sample per item, as the one-task-per-item variants
record one per task, so the probe costs every variant the same per item and the
report compares items per second.
"""

from __future__ import annotations

from app.jobs.batches import BatchTask, Item
from bench import probe
from bench.conveyor import add_bench_queue, app
from bench.variants import BATCH_TASK_NAME
from bench.variants import BATCHED_QUEUE as QUEUE

#: Items per batch (the guide's example), and the wait for a partial batch, seconds.
FLUSH_EVERY = 100
FLUSH_INTERVAL_S = 0.2

add_bench_queue(QUEUE, BATCH_TASK_NAME)


@app.task(
    base=BatchTask,
    name=BATCH_TASK_NAME,
    shared=False,
    flush_every=FLUSH_EVERY,
    flush_interval=FLUSH_INTERVAL_S,
)
def noop_batch(items: list[Item]) -> None:
    """Do nothing but tell the probe when each item started (sent as ``sent=``)."""
    for item in items:
        probe.record(item.kwargs["sent"])


__all__ = ["QUEUE", "app", "noop_batch"]
