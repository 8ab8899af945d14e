"""What a real worker process sets up besides running jobs.

* Task events, Flower's feed, reach a monitor on each broker. On RabbitMQ the
  worker publishes them on a connection of their own that does not wait for
  publisher confirms (``app.jobs.worker.ConveyorConsumer``); task messages still wait
  for theirs.
* Pool processes start with the worker's startup objects frozen (``gc.freeze``).
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from tasks import demo
from tests.acceptance import probe_tasks
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance


def test_a_worker_sends_each_jobs_task_events_to_a_monitor(broker: Broker) -> None:
    from app.celery import app

    job = str(uuid.uuid4())
    events: list[dict[str, Any]] = []
    with (
        Worker(broker.url, queues="default", name=f"events-{broker.name}") as worker,
        app.connection_for_read() as conn,
    ):
        receiver = app.events.Receiver(conn, handlers={"*": events.append})
        # wakeup asks the workers for a heartbeat: once one arrives, the monitor's
        # queue is bound and no event of the job can be missed.
        stream = receiver.itercapture(timeout=30, wakeup=True)
        deadline = time.monotonic() + 30
        while not any(e["type"] == "worker-heartbeat" for e in events):
            assert time.monotonic() < deadline, "no heartbeat reached the monitor"
            next(stream)
        demo.ping.apply_async(("events",), task_id=job)
        while not any(e.get("uuid") == job and e["type"] == "task-succeeded" for e in events):
            assert time.monotonic() < deadline + 30, f"events of {job} so far: {events}"
            next(stream)
    # The producer's task-sent comes on a connection of its own, in no set order.
    mine = [e for e in events if e.get("uuid") == job and e["type"] != "task-sent"]
    assert [e["type"] for e in mine] == ["task-received", "task-started", "task-succeeded"]
    assert {e["hostname"] for e in mine} == {worker.hostname}
    assert mine[-1]["result"] == "'pong: events'"


def test_only_task_messages_wait_for_rabbitmqs_publisher_confirms() -> None:
    from app.celery import app
    from app.jobs.worker import ConveyorConsumer
    from tests.servers import use_broker

    with contextmanager(use_broker)("rabbitmq"):
        consumer = SimpleNamespace(app=app, ensure_connected=lambda conn: conn)
        with (
            ConveyorConsumer.connection_for_write(consumer) as events,
            app.connection_for_write() as tasks,
        ):
            events.connect()
            tasks.connect()
            assert events.connection.confirm_publish is False
            assert tasks.connection.confirm_publish is True


def test_pool_processes_start_with_the_workers_startup_objects_frozen(
    redis_broker: Broker,
) -> None:
    """The collector's full passes skip what the worker imported (app.celery, worker_init)."""
    with Worker(redis_broker.url, queues="default", name="frozen") as worker:
        frozen = probe_tasks.frozen.delay().get(timeout=30)
        assert worker.alive()
    assert frozen > 10_000, f"only {frozen} objects frozen in the pool process"
