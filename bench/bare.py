"""Bare Celery with Conveyor's reliability settings, and nothing else of Conveyor.

Two apps, each a plain :class:`celery.Celery` with the no-op task:

* ``bench.bare:app``: no result backend.
* ``bench.bare:app_pg``: Celery's own PostgreSQL backend (``db+postgresql+psycopg://``).

Both start from :func:`app.celery.celery_config`, so acks, redelivery, prefetch,
limits, shutdown, serializers, events and transport options are Conveyor's;
only the keys in :data:`CONVEYOR_ONLY` are dropped. Broker and database come
from the ``CONVEYOR_*`` environment, as for Conveyor itself.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from app.celery import celery_config
from bench import probe
from bench.variants import BARE_QUEUE as QUEUE
from bench.variants import TASK_NAME
from config.settings import Settings, get_settings

#: Conveyor's own choices, not reliability settings: its queues and routes,
#: beat, and the extra result rows it writes (STARTED state, extended fields).
CONVEYOR_ONLY = frozenset(
    {
        "task_queues",
        "task_default_queue",
        "task_default_exchange",
        "task_default_routing_key",
        "task_routes",
        "task_create_missing_queues",
        "task_queue_max_priority",
        "task_track_started",
        "result_extended",
        "result_expires",
        "beat_schedule",
        "beat_scheduler",
        "beat_max_loop_interval",
        # Its consumer publishes task events without waiting for confirms.
        "worker_consumer",
        # ConveyorTask's retry policy.
        "conveyor_task_max_retries",
        "conveyor_task_retry_backoff_s",
        "conveyor_task_retry_backoff_max_s",
    }
)

#: Keys that only mean something with a result backend.
BACKEND_ONLY = frozenset(
    {
        "database_engine_options",
        "database_short_lived_sessions",
        "result_backend_always_retry",
        "result_backend_max_retries",
    }
)


def bare_config(settings: Settings, result_backend: bool) -> dict[str, Any]:
    """Conveyor's Celery settings without :data:`CONVEYOR_ONLY`, on queue :data:`QUEUE`."""
    config = {k: v for k, v in celery_config(settings).items() if k not in CONVEYOR_ONLY}
    if result_backend:  # Celery's own PostgreSQL backend, as a bare deployment has it
        config.update(
            result_backend="db+" + settings.database_url,
            database_engine_options={"pool_pre_ping": True, "pool_recycle": 1800},
        )
    else:
        config = {k: v for k, v in config.items() if k not in BACKEND_ONLY}
        config["result_backend"] = None
    config.update(
        task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)],
        task_default_queue=QUEUE,
        task_default_routing_key=QUEUE,
    )
    return config


def create_bare_app(settings: Settings, result_backend: bool) -> Celery:
    """A plain Celery app with the no-op task."""
    name = "bench_bare_pg" if result_backend else "bench_bare"
    celery_app = Celery(name, set_as_current=False)
    celery_app.conf.update(bare_config(settings, result_backend))

    # Not shared: a shared task would also register on every other app in the process.
    @celery_app.task(name=TASK_NAME, shared=False)
    def noop(sent: float) -> None:
        """Do nothing but tell the probe when it started."""
        probe.record(sent)

    return celery_app


app = create_bare_app(get_settings(), result_backend=False)
app_pg = create_bare_app(get_settings(), result_backend=True)
