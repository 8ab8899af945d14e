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


def bench_queue() -> Queue:
    """:data:`QUEUE`, with the exchange and arguments of Conveyor's own queues."""
    model = task_queues(app.conf.conveyor_settings)[0]
    return Queue(
        QUEUE,
        model.exchange,
        routing_key=QUEUE,
        durable=True,
        queue_arguments=model.queue_arguments,
    )


if QUEUE not in {queue.name for queue in app.conf.task_queues}:
    app.conf.task_queues = [*app.conf.task_queues, bench_queue()]
    # Routed like Conveyor's own tasks (app.celery.ROUTES), not by a task attribute.
    app.conf.task_routes = {**app.conf.task_routes, TASK_NAME: {"queue": QUEUE}}


@app.task(name=TASK_NAME, shared=False)
def noop(sent: float) -> None:
    """Do nothing but tell the probe when it started."""
    probe.record(sent)


__all__ = ["QUEUE", "app", "noop"]
