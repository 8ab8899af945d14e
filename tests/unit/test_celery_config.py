"""The reliability baseline, read from the configuration Celery actually gets."""

from __future__ import annotations

import pytest

from app.celery import celery_config, create_app
from config.settings import BrokerSettings, Settings

REDIS = Settings(_env_file=None, broker=BrokerSettings(url="redis://127.0.0.1:6379/0"))
RABBITMQ = Settings(_env_file=None, broker=BrokerSettings(url="amqp://guest:guest@127.0.0.1//"))


@pytest.mark.parametrize("settings", [REDIS, RABBITMQ], ids=["redis", "rabbitmq"])
def test_json_is_the_only_serializer_on_the_wire(settings: Settings) -> None:
    config = celery_config(settings)
    assert config["task_serializer"] == config["result_serializer"] == "json"
    assert config["event_serializer"] == "json"
    assert config["accept_content"] == config["result_accept_content"] == ["json"]


@pytest.mark.parametrize("settings", [REDIS, RABBITMQ], ids=["redis", "rabbitmq"])
def test_delivery_is_at_least_once(settings: Settings) -> None:
    config = celery_config(settings)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_time_limit"] > config["task_soft_time_limit"]


def test_redis_visibility_timeout_reaches_kombu_and_exceeds_the_hard_limit() -> None:
    config = celery_config(REDIS)
    timeout = REDIS.broker.visibility_timeout_s
    # kombu's Redis transport reads it from the transport options, and nothing
    # else in Celery 5.7 or kombu reads a visibility timeout with a ledger backend.
    assert config["broker_transport_options"]["visibility_timeout"] == timeout
    assert "visibility_timeout" not in config
    assert "result_backend_transport_options" not in config
    assert timeout > config["task_time_limit"]
    assert config["broker_transport_options"]["queue_order_strategy"] == "priority"
    # redis-py's own retry reconnects behind kombu's back and froze workers after a
    # broker restart (tests/acceptance/test_broker_restart.py).
    assert "retry_on_timeout" not in config["broker_transport_options"]


def test_rabbitmq_confirms_publishes_and_queues_carry_priorities() -> None:
    config = celery_config(RABBITMQ)
    assert config["broker_transport_options"]["confirm_publish"] is True
    arguments = {queue.name: queue.queue_arguments for queue in config["task_queues"]}
    assert all(args == {"x-max-priority": 9} for args in arguments.values()), arguments


def test_publishing_gives_up_after_bounded_retries() -> None:
    config = celery_config(REDIS)
    assert config["task_publish_retry_policy"]["max_retries"] == REDIS.broker.publish_max_retries
    assert config["broker_connection_timeout"] == REDIS.broker.connection_timeout_s


def test_results_live_in_the_ledger() -> None:
    assert celery_config(REDIS)["result_backend"] == "app.jobs.backend:LedgerBackend"


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("health.probe", "critical"),
        ("demo.ping", "default"),
        ("emails.send", "emails"),
        ("reports.job_summary", "reports"),
        ("maintenance.purge_finished_jobs", "background"),
    ],
)
def test_tasks_are_routed_to_their_queue_by_name(task: str, queue: str) -> None:
    app = create_app(REDIS)
    assert app.amqp.router.route({}, task)["queue"].name == queue
    assert next(q.name for q in app.conf.task_queues) == "critical", "critical is served first"
