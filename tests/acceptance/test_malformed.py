"""No message published straight to the broker stops a worker, or runs.

Each malformed message names ``probe.record`` with a key of its own: had any of them
run, its effect row would show it. After them, a normal job still completes, and a
worker started on the same queue (the message may still be there) stays up too.
"""

from __future__ import annotations

import json
import pickle
import uuid
from typing import Any

import pytest
import yaml
from kombu import Exchange, Producer

from app.celery import app
from app.jobs.service import JobService
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

WORK = Exchange("conveyor", type="direct", durable=True)


def task_headers(key: str, **changes: Any) -> dict[str, Any]:
    """Protocol 2 headers of a ``probe.record`` message for ``key``."""
    headers = {
        "lang": "py",
        "task": "probe.record",
        "id": str(uuid.uuid4()),
        "root_id": None,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "()",
        "kwargsrepr": repr({"key": key}),
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not ...}


def body(key: str) -> list[Any]:
    return [[], {"key": key}, {"callbacks": None, "errbacks": None, "chain": None}]


def publish_malformed(prefix: str) -> dict[str, str]:
    """Publish each kind of malformed message; return what each is, by its effect key."""
    kinds = {
        f"{prefix}-pickle": "a pickled task message",
        f"{prefix}-yaml": "a YAML task message",
        f"{prefix}-data": "an application/data body with a task's headers",
        f"{prefix}-noheaders": "a JSON task body without headers",
        f"{prefix}-noid": "a JSON task message whose headers lack its id",
        f"{prefix}-notlist": "a JSON task message whose body is a string",
    }
    with app.connection_for_write() as conn:
        producer = Producer(conn.default_channel)

        def send(payload: Any, content_type: str, headers: dict[str, Any], **kw: Any) -> None:
            producer.publish(
                payload,
                exchange=kw.get("exchange", WORK),
                routing_key=kw.get("routing_key", "default"),
                content_type=content_type,
                content_encoding="binary" if isinstance(payload, bytes) else "utf-8",
                headers=headers,
                serializer=None,
                declare=[kw["exchange"]] if "exchange" in kw else [],
            )

        key = f"{prefix}-pickle"
        send(pickle.dumps(body(key)), "application/x-python-serialize", task_headers(key))
        key = f"{prefix}-yaml"
        send(yaml.safe_dump(body(key)), "application/x-yaml", task_headers(key))
        key = f"{prefix}-data"
        send(json.dumps(body(key)).encode(), "application/data", task_headers(key))
        key = f"{prefix}-noheaders"
        send(json.dumps(body(key)), "application/json", {})
        key = f"{prefix}-noid"
        send(json.dumps(body(key)), "application/json", task_headers(key, id=...))
        key = f"{prefix}-notlist"
        send(json.dumps(key), "application/json", task_headers(key))
        # Outside the work queues: an event and a remote-control command, pickled.
        event = pickle.dumps({"type": "worker-heartbeat", "hostname": "intruder@host"})
        events = Exchange("celeryev", type="topic", durable=True)
        send(
            event,
            "application/x-python-serialize",
            {},
            exchange=events,
            routing_key="worker.heartbeat",
        )
        command = pickle.dumps({"method": "ping", "arguments": {}, "destination": None})
        pidbox = Exchange("celery.pidbox", type="fanout", durable=False, auto_delete=False)
        send(command, "application/x-python-serialize", {}, exchange=pidbox, routing_key="")
    return kinds


def test_malformed_messages_run_nothing_and_stop_no_worker(
    broker: Broker, effects: Effects
) -> None:
    service = JobService()
    prefix = f"bad-{uuid.uuid4().hex[:6]}"
    with Worker(broker.url, queues="default", name=f"malformed-{broker.name}") as worker:
        kinds = publish_malformed(prefix)
        after = service.enqueue("probe.record", {"key": f"{prefix}-after"})
        wait_for(lambda: service.get(after)["status"] == "completed", 30, "the normal job")
        assert worker.alive(), worker.output()[-3000:]
    # A worker started after them finds what is left of them, and stays up too.
    with Worker(broker.url, queues="default", name=f"malformed2-{broker.name}") as second:
        later = service.enqueue("probe.record", {"key": f"{prefix}-later"})
        wait_for(lambda: service.get(later)["status"] == "completed", 30, "the next job")
        assert second.alive(), second.output()[-3000:]
    ran = {row[0] for row in effects.rows(prefix)} - {f"{prefix}-after", f"{prefix}-later"}
    assert ran == set(), f"malformed messages ran: {[kinds[k] for k in ran]}"
    # Each was set aside with a log line that says why: five task messages rejected as
    # invalid, one without headers deleted as unknown, the pickled command not decoded.
    # (The pickled event reaches no queue of the worker's: it runs without gossip.)
    log = worker.output()
    invalid = "Received invalid task message: "
    untrusted = invalid + "Refusing to deserialize untrusted content of type "
    for line in (
        untrusted + "pickle",
        untrusted + "yaml",
        invalid + "TypeError: a bytes-like object is required",
        invalid + "KeyError: 'id'",
        invalid + "ValueError: too many values to unpack",
        "Received and deleted unknown message",
        "Can't decode message body: ContentDisallowed",
    ):
        assert log.count(line) == 1, (line, log[-5000:])
