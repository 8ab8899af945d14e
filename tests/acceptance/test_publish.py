"""What a producer is refused at publish, and what a worker refuses to execute."""

from __future__ import annotations

import os
import pickle
import time
import uuid
from pathlib import Path

import pytest

from app.celery import app
from app.embedded import EmbeddedRedis, free_port
from app.errors import BrokerUnavailable, NotJsonSerializable, UnknownTask
from app.producer import publish_timeout_s
from config.settings import QUEUES, get_settings
from tasks import demo
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker, configure
from tests.services import OwnRabbitMQ

pytestmark = pytest.mark.acceptance


def depths() -> dict[str, int]:
    """Messages waiting in each work queue."""
    with app.connection_for_write() as conn:
        return {
            queue.name: int(queue(conn.default_channel).queue_declare().message_count)
            for queue in app.amqp.queues.values()
        }


def test_unknown_task_name_is_refused_naming_it(broker: Broker) -> None:
    with pytest.raises(UnknownTask) as refused:
        app.send_task("reports.montly_summary", args=[3])
    assert "'reports.montly_summary'" in str(refused.value)
    assert "reports.job_summary" in str(refused.value), "the known tasks are listed"
    assert depths() == dict.fromkeys(QUEUES, 0), "nothing was published"


def test_non_json_argument_is_refused_naming_it(broker: Broker) -> None:
    with pytest.raises(NotJsonSerializable) as refused:
        demo.ping.apply_async(kwargs={"message": {"when": "now", "callback": object()}})
    assert "kwargs['message']['callback']" in str(refused.value)
    assert "demo.ping" in str(refused.value)
    assert depths() == dict.fromkeys(QUEUES, 0), "nothing was published"


class Exploit:
    """Unpickling this creates a directory: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_pickled_message_is_discarded_never_executed(
    broker: Broker, effects: Effects, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    task_id = str(uuid.uuid4())
    body = pickle.dumps(
        ([Exploit(marker)], {}, {"callbacks": None, "errbacks": None, "chain": None})
    )
    headers = {
        "lang": "py",
        "task": "probe.record",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "",
        "kwargsrepr": "",
        "origin": "attacker",
    }
    with Worker(broker.url, queues="default", concurrency=1) as worker:
        with app.producer_or_acquire() as producer:
            producer.publish(
                body,
                exchange="conveyor",
                routing_key="default",
                headers=headers,
                content_type="application/x-python-serialize",
                content_encoding="binary",
            )
        probe_tasks.record.delay("after-pickle")
        wait_for(lambda: effects.count("after-pickle", "done") == 1, 30, "the JSON task behind it")
        assert depths()["default"] == 0, "the pickled message does not stay in the queue"
        log = worker.output()
    assert not marker.exists(), "the pickle was deserialised"
    assert effects.count("after-pickle") == 1
    assert "pickle" in log.lower(), "the worker says why it refused the message"


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_delay_raises_a_clear_error_within_the_timeout_when_the_broker_is_down(
    kind: str, tmp_path: Path
) -> None:
    server: EmbeddedRedis | OwnRabbitMQ
    server = EmbeddedRedis(tmp_path / "redis", free_port()) if kind == "redis" else OwnRabbitMQ()
    server.start()
    base = get_settings()
    settings = base.model_copy(
        update={
            "broker": base.broker.model_copy(
                update={"url": server.url, "connection_timeout_s": 1.0, "publish_max_retries": 2}
            )
        }
    )
    try:
        configure(app, settings)
        assert demo.ping.delay("up").id, "publishing works while the broker is up"
        server.stop()
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as refused:
            demo.ping.delay("down")
        elapsed = time.monotonic() - started
        bound = publish_timeout_s(settings)
        assert elapsed <= bound + 1.0, f"gave up after {elapsed:.1f}s, bound {bound}s"
        assert f"127.0.0.1:{server.port}" in str(refused.value)
        assert "unavailable" in str(refused.value)
    finally:
        configure(app, get_settings())
        server.remove() if isinstance(server, OwnRabbitMQ) else server.stop()
