"""What a real worker process sets up besides running jobs.

* Task events, Flower's feed, reach a monitor on each broker. On RabbitMQ the
  worker publishes them on a connection of their own that does not wait for
  publisher confirms (``app.jobs.worker.ConveyorConsumer``); task messages still wait
  for theirs. A burst's events go out gathered, many to a message.
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


@contextmanager
def monitor(deadline: float) -> Any:
    """A monitor receiving the workers' events: (events, messages, next event); once it
    starts, a heartbeat has arrived, so the monitor's queue is bound and no event of a
    job sent from then on can be missed. ``messages`` has one count per message that
    carried task events: how many it carried."""
    from app.celery import app

    events: list[dict[str, Any]] = []
    messages: list[int] = []

    class Counting(app.events.Receiver):  # type: ignore[misc,name-defined]
        def _receive(self, body: Any, message: Any, **kw: Any) -> Any:
            if isinstance(body, list):
                messages.append(len(body))
            return super()._receive(body, message, **kw)

    with app.connection_for_read() as conn:
        receiver = Counting(conn, handlers={"*": events.append})
        # wakeup asks the workers for a heartbeat.
        stream = receiver.itercapture(timeout=30, wakeup=True)
        while not any(e["type"] == "worker-heartbeat" for e in events):
            assert time.monotonic() < deadline, "no heartbeat reached the monitor"
            next(stream)
        yield events, messages, lambda: next(stream)


def test_a_worker_sends_each_jobs_task_events_to_a_monitor(broker: Broker) -> None:
    job = str(uuid.uuid4())
    deadline = time.monotonic() + 30
    with (
        Worker(broker.url, queues="default", name=f"events-{broker.name}") as worker,
        monitor(deadline) as (events, _, receive),
    ):
        demo.ping.apply_async(("events",), task_id=job)
        while not any(e.get("uuid") == job and e["type"] == "task-succeeded" for e in events):
            assert time.monotonic() < deadline + 30, f"events of {job} so far: {events}"
            receive()
    # The producer's task-sent comes on a connection of its own, in no set order.
    mine = [e for e in events if e.get("uuid") == job and e["type"] != "task-sent"]
    assert [e["type"] for e in mine] == ["task-received", "task-started", "task-succeeded"]
    assert {e["hostname"] for e in mine} == {worker.hostname}
    assert mine[-1]["result"] == "'pong: events'"


def test_a_burst_of_jobs_sends_its_task_events_in_few_messages(broker: Broker) -> None:
    """Celery sends about one message per task event; a Conveyor worker gathers what
    comes within ``worker.events_flush_s`` (here 1 s) or 24 events in one."""
    jobs = [str(uuid.uuid4()) for _ in range(30)]
    deadline = time.monotonic() + 30
    env = {"CONVEYOR_WORKER__EVENTS_FLUSH_S": "1"}
    with (
        Worker(broker.url, queues="default", name=f"burst-{broker.name}", env=env) as worker,
        monitor(deadline) as (events, messages, receive),
    ):
        sent_at = time.monotonic()
        for job in jobs:
            demo.ping.apply_async(("burst",), task_id=job)
        while sum(e["type"] == "task-succeeded" and e.get("uuid") in jobs for e in events) < 30:
            assert time.monotonic() < deadline + 60, f"{len(events)} events so far"
            receive()
        took_s = time.monotonic() - sent_at
    mine = [e for e in events if e.get("uuid") in jobs and e["type"] != "task-sent"]
    for job in jobs:
        assert [e["type"] for e in mine if e["uuid"] == job] == [
            "task-received",
            "task-started",
            "task-succeeded",
        ]
    assert {e["hostname"] for e in mine} == {worker.hostname}
    # 90 events: at most 24 in a message, and a message at least every second.
    assert sum(messages) >= 90
    assert len(messages) <= 90 // 24 + 1 + int(took_s) + 1, (messages, took_s)


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
