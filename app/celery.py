"""The one Celery application, configured from settings and nothing else.

``celery -A app.celery worker`` finds ``app`` here. Every reliability knob is
set in :func:`celery_config`, each with the reason it is there.
"""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime
from typing import Any

from celery import Celery, signals
from celery.worker.consumer import Consumer
from kombu import Exchange, Queue
from kombu import pools as kombu_pools

from app.jobs import lifecycle
from app.jobs.gate import gate
from app.jobs.heartbeat import Heartbeat
from app.jobs.releaser import Releaser, hold_if_later
from app.producer import check_registered, publishing
from config.settings import DEAD_LETTER_QUEUE, QUEUES, Settings, get_settings

#: Modules whose tasks every worker and producer registers.
TASK_MODULES = (
    "tasks.demo",
    "tasks.health",
    "tasks.emails",
    "tasks.reports",
    "tasks.maintenance",
    "tasks.statistics",
)

#: Task name prefix → queue. Anything else goes to ``default``.
ROUTES: dict[str, str] = {
    "health.*": "critical",
    "emails.*": "emails",
    "reports.*": "reports",
    "maintenance.*": "background",
    "statistics.*": "background",
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


def dead_letter_queue() -> Queue:
    """Where failed jobs wait for an operator; declared on first use, consumed by no worker."""
    return Queue(
        DEAD_LETTER_QUEUE,
        Exchange("conveyor.dead_letter", type="direct", durable=True),
        routing_key=DEAD_LETTER_QUEUE,
        durable=True,
    )


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
            # task; Celery reads it in three places (celery#7651).
            "visibility_timeout": visibility,
            # BRPOP the queues in declaration order: `critical` first (kombu redis.py).
            "queue_order_strategy": "priority",
            "socket_connect_timeout": broker.connection_timeout_s,
            "socket_timeout": max(broker.connection_timeout_s, 30.0),
            "socket_keepalive": True,
            "retry_on_timeout": True,
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
        "visibility_timeout": visibility,
        # Results live in the job ledger, written in batches (app/jobs/backend.py).
        "result_backend": "app.jobs.backend:LedgerBackend",
        "result_backend_transport_options": {"visibility_timeout": visibility},
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
        "worker_consumer": "app.celery:ConveyorConsumer",
        # Schedules live in the database (beat/defaults.py declares Conveyor's own).
        "beat_schedule": {},
        "beat_scheduler": "beat.scheduler:ConveyorScheduler",
        "beat_max_loop_interval": 5,
        "timezone": settings.timezone,
        "enable_utc": True,
    }


class ConveyorConsumer(Consumer):
    """The worker's consumer; its task events go out without publisher confirms.

    ``confirm_publish`` is a connection-wide transport option, so a plain Celery
    worker also waits for RabbitMQ to confirm each batch of task events, and its
    event loop stands still for that round trip several times per task. Events
    are monitoring for Flower, not jobs (the ledger is the record of every job),
    so the connection the worker opens for them alone is made without confirms.
    Task messages, retries and dead letters keep theirs.
    """

    def connection_for_write(self, url: str | None = None, heartbeat: Any = None) -> Any:
        """The events connection (Celery's ``Events`` bootstep is its only caller)."""
        return self.ensure_connected(
            self.app.connection_for_write(
                url=url, heartbeat=heartbeat, transport_options={"confirm_publish": False}
            )
        )


class ConveyorCelery(Celery):
    """Celery that refuses, at publish, a task name no module registered."""

    #: Its jobs are recorded in the ledger (see app.jobs.lifecycle.ours).
    conveyor_ledger = True

    def send_task(  # type: ignore[override]
        self, name: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> Any:
        """Publish ``name``, refusing unknown names, non-JSON arguments and a dead broker.

        Raises :class:`~app.errors.UnknownTask`, :class:`~app.errors.NotJsonSerializable`
        or :class:`~app.errors.BrokerUnavailable`, each naming what was wrong.
        """
        check_registered(self, name)
        held = hold_if_later(self, name, args, kwargs, options)
        if held is not None:
            return held
        # When it was sent: the worker's claim trusts the gate only for messages the
        # gate has known all their life (see app.jobs.gate).
        options["headers"] = {**(options.get("headers") or {}), lifecycle.SENT_HEADER: time.time()}
        gate.ensure_epoch()
        token = lifecycle.publishing_conveyor.set(datetime.now(UTC))
        try:
            with publishing(self, name, args, kwargs):
                return super().send_task(name, args, kwargs, **options)
        finally:
            lifecycle.publishing_conveyor.reset(token)


def configure(celery_app: Celery, settings: Settings) -> None:
    """Point ``celery_app`` at the servers of ``settings``, dropping cached connections.

    A process normally configures once, at import; a producer that talks to two
    brokers in turn (the test suite, the benchmark) calls this between them.
    """
    celery_app.conf.update(celery_config(settings))
    celery_app.conf.conveyor_settings = settings
    # kombu keeps connection and producer pools per process; start them afresh.
    kombu_pools.reset()
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.__dict__.pop("amqp", None)  # queues, router and producer pool
    # The result backend, cached per thread or per app (Celery's private caches).
    celery_app._local.__dict__.pop("backend", None)  # type: ignore[attr-defined]
    celery_app._backend_cache = None  # type: ignore[attr-defined]


def create_app(settings: Settings | None = None) -> ConveyorCelery:
    """A configured Celery application for ``settings`` (the environment's by default)."""
    settings = settings or get_settings()
    celery_app = ConveyorCelery("conveyor", include=[*TASK_MODULES, *settings.task_modules])
    configure(celery_app, settings)
    return celery_app


app = create_app()
lifecycle.connect()

_threads: list[Releaser | Heartbeat] = []


@signals.worker_init.connect
def _freeze_startup_objects(sender: Any = None, **_: Any) -> None:
    """Keep the garbage collector off what the worker built at startup (``gc.freeze``).

    Every module, task and setting the worker imported lives as long as the
    process: the collector's full passes need not walk them in the main process
    nor in the pool processes forked from it, which also keep those pages shared.
    """
    if sender is None or sender.app is not app:  # another Celery app in this process
        return
    gc.freeze()


@signals.worker_ready.connect
def _start_worker_threads(sender: Any = None, **_: Any) -> None:
    """Every worker publishes held jobs when due (they share the work, never duplicate
    it), heartbeats, and requeues jobs that silent workers left running."""
    if sender is None or sender.app is not app:  # another Celery app in this process
        return
    queues = [queue.name for queue in sender.task_consumer.queues]
    _threads.extend([Releaser(app), Heartbeat(sender.hostname, queues)])
    for thread in _threads:
        thread.start()


@signals.worker_shutdown.connect
def _stop_worker_threads(**_: Any) -> None:
    for thread in _threads:
        thread.stop()
