"""The one Celery application, configured from settings and nothing else.

``celery -A app.celery worker`` finds ``app`` here. Every reliability knob is
set in :func:`celery_config`, each with the reason it is there.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from config.settings import QUEUES, Settings, get_settings

#: The worker's consumer, threads and signal wiring (imported by workers with the tasks).
WORKER_RUNTIME = "app.jobs.worker"

#: Modules whose tasks every worker and producer registers.
TASK_MODULES = (
    "tasks.demo",
    "tasks.health",
    "tasks.emails",
    "tasks.alerts",
    "tasks.notifications",
    "tasks.reports",
    "tasks.maintenance",
    "tasks.statistics",
    "tasks.storage",
    "tasks.cleanup",
    "tasks.exports",
    "tasks.catalog_reports",
    "tasks.catalog",
    "app.web.housekeeping",
)

#: Task name prefix → queue. Anything else goes to ``default``.
ROUTES: dict[str, str] = {
    "health.*": "critical",
    "alerts.*": "default",  # ahead of `emails` in a worker's order (tasks/alerts.py)
    "emails.*": "emails",
    "reports.*": "reports",
    "maintenance.*": "background",
    "statistics.*": "background",
    "storage.*": "background",
    "catalog.*": "background",
}

#: RabbitMQ message priorities run 0..MAX_PRIORITY within a queue.
MAX_PRIORITY = 9


def task_queues(settings: Settings) -> list[Queue]:
    """The five work queues, most urgent first."""
    exchange = Exchange("conveyor", type="direct", durable=True)
    arguments: dict[str, Any] = {}
    if not settings.broker.is_redis:
        arguments["x-max-priority"] = MAX_PRIORITY
    return [
        Queue(name, exchange, routing_key=name, durable=True, queue_arguments=arguments or None)
        for name in QUEUES
    ]


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's settings for ``settings``.

    Reference: docs.celeryq.dev/en/stable/userguide/configuration.html
    """
    worker = settings.worker
    broker = settings.broker
    visibility = broker.visibility_timeout_s
    transport_options: dict[str, Any] = {}
    if broker.is_redis:
        transport_options = {
            # Must exceed the longest hard time limit, or Redis redelivers a running
            # task (checked at startup). kombu's Redis transport is its only reader:
            # the result backend is the ledger, not Redis (celery#7651).
            "visibility_timeout": visibility,
            # BRPOP the queues in declaration order: `critical` first (kombu redis.py).
            "queue_order_strategy": "priority",
            "socket_connect_timeout": broker.connection_timeout_s,
            "socket_timeout": max(broker.connection_timeout_s, 30.0),
            "socket_keepalive": True,
            # No `retry_on_timeout` (kombu's default): kombu reconnects by itself, a
            # worker by restarting its consumer and a publish under its retry policy
            # (redis timeouts are kombu connection errors). With it, redis-py retries a
            # failed read after reconnecting the socket behind kombu's back: on the
            # pub/sub socket of the worker's mailbox, that read has no timeout and no
            # subscription, so the event loop blocks for ever and the worker answers no
            # ping and takes no task (https://github.com/celery/celery/issues/9054,
            # https://github.com/redis/redis-py/issues/714). See
            # tests/acceptance/test_broker_restart.py.
        }
    else:
        # Publisher confirms: `.delay()` returns once RabbitMQ has the message.
        transport_options = {"confirm_publish": True}
    # Bound every connection attempt made while publishing (celery#4296, #4663).
    transport_options.update(
        max_retries=broker.publish_max_retries,
        interval_start=0,
        interval_step=0.5,
        interval_max=1.0,
    )
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_timeout": broker.connection_timeout_s,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # workers keep reconnecting for ever
        "broker_heartbeat": 30,
        "task_publish_retry_policy": {
            "max_retries": broker.publish_max_retries,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        "broker_pool_limit": 10,
        # Results live in the job ledger, written in batches (app/jobs/backend.py).
        "result_backend": "app.jobs.backend:LedgerBackend",
        "result_backend_always_retry": True,
        "result_backend_max_retries": 10,
        "result_extended": True,
        # Expiry is the ledger's retention task; None keeps beat from adding Celery's
        # `celery.backend_cleanup`.
        "result_expires": None,
        # JSON only: a pickled message is discarded, never executed (security.rst).
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Queues and routing.
        "task_queues": task_queues(settings),
        "task_default_queue": "default",
        "task_default_exchange": "conveyor",
        "task_default_routing_key": "default",
        "task_routes": {pattern: {"queue": queue} for pattern, queue in ROUTES.items()},
        "task_create_missing_queues": False,
        "task_queue_max_priority": None if broker.is_redis else MAX_PRIORITY,
        # At-least-once: ack after the task ran; requeue when its process died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Limits.
        "task_soft_time_limit": worker.soft_time_limit_s,
        "task_time_limit": worker.time_limit_s,
        "worker_max_tasks_per_child": worker.max_tasks_per_child,
        "worker_max_memory_per_child": worker.max_memory_per_child_kib,
        # SIGTERM is a warm shutdown: running tasks finish, unstarted ones go back
        # to the broker. A cold shutdown (SIGQUIT, or SIGTERM with
        # REMAP_SIGTERM=SIGQUIT) first gives running tasks this long.
        "worker_soft_shutdown_timeout": worker.soft_shutdown_timeout_s,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Visibility: STARTED state and events for Flower.
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_consumer": "app.jobs.worker:ConveyorConsumer",
        # Where JobService keeps recurring jobs (by name: app.jobs never imports beat).
        "conveyor_schedules": "beat.service:ScheduleService",
        # ConveyorTask's retry policy, read when the app binds each task
        # (app/jobs/task.py): a task's own value wins.
        "conveyor_task_max_retries": worker.max_retries,
        "conveyor_task_retry_backoff_s": worker.retry_backoff_s,
        "conveyor_task_retry_backoff_max_s": worker.retry_backoff_max_s,
        # Schedules live in the database (beat/defaults.py declares Conveyor's own).
        "beat_schedule": {},
        "beat_scheduler": "beat.scheduler:ConveyorScheduler",
        "beat_max_loop_interval": 5,
        "timezone": settings.timezone,
        "enable_utc": True,
    }


def create_app(settings: Settings | None = None) -> Celery:
    """A configured Celery application for ``settings`` (the environment's by default).

    Conveyor's job system plugs in by name, so this module imports none of it:
    every task is a ``ConveyorTask`` (``task_cls``), every publish passes
    ``ConveyorAMQP``'s checks, and a worker loads its runtime (``app.jobs.worker``)
    with the task modules.
    """
    settings = settings or get_settings()
    celery_app = Celery(
        "conveyor",
        task_cls="app.jobs.task:ConveyorTask",
        amqp="app.jobs.publisher:ConveyorAMQP",
        include=[WORKER_RUNTIME, *TASK_MODULES, *settings.task_modules],
    )
    celery_app.conf.update(celery_config(settings))
    celery_app.conf.conveyor_settings = settings
    return celery_app


app = create_app()
