"""Conveyor's own app and task base, with a no-op task on a benchmark-only queue.

``celery -A bench.conveyor worker -Q bench_conveyor`` runs the real
:data:`app.celery.app` (every task module, every setting, results in
PostgreSQL) plus :func:`noop`, a plain ``@app.task`` (so a ConveyorTask). The extra
queue is declared like Conveyor's five, on the ``conveyor`` exchange, so that
tests purging those five never see benchmark messages.
"""

from __future__ import annotations

from kombu import Queue

from app.celery import app, task_queues
from bench import probe
from bench.variants import CONVEYOR_QUEUE as QUEUE
from bench.variants import TASK_NAME


def bench_queue(name: str) -> Queue:
    """Queue ``name``, with the exchange and arguments of Conveyor's own queues."""
    model = task_queues(app.conf.conveyor_settings)[0]
    return Queue(
        name,
        model.exchange,
        routing_key=name,
        durable=True,
        queue_arguments=model.queue_arguments,
    )


def add_bench_queue(name: str, task_name: str) -> None:
    """Declare queue ``name`` on the app (once) and route ``task_name`` to it."""
    if name not in {queue.name for queue in app.conf.task_queues}:
        app.conf.task_queues = [*app.conf.task_queues, bench_queue(name)]
        # Routed like Conveyor's own tasks (app.celery.ROUTES), not by a task attribute.
        app.conf.task_routes = {**app.conf.task_routes, task_name: {"queue": name}}


add_bench_queue(QUEUE, TASK_NAME)


@app.task(name=TASK_NAME, shared=False)
def noop(sent: float) -> None:
    """Do nothing but tell the probe when it started."""
    probe.record(sent)


__all__ = ["QUEUE", "app", "noop"]
