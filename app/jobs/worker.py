"""The worker's runtime: its consumer, its threads and its signal wiring.

The Celery app imports this module with its task modules (``include``), so a
worker loads it before ``worker_init``; in any other process its receivers
never fire. It adds to a Conveyor worker:

* :class:`ConveyorConsumer`, which sets a malformed task message aside, and whose
  task events go out in batches, without publisher confirms;
* ``gc.freeze()`` at ``worker_init``, before the pool forks;
* per worker, a releaser thread (held jobs published when due) and a heartbeat
  thread (its sign of life, outcomes dead pool processes left in the gate, and
  the recovery of jobs silent workers left running or, on Redis, unacknowledged),
  from ``worker_ready`` to
  ``worker_shutdown``;
* the ledger's record of what happens outside a delivery: a revoked job, and a
  task that rejected its message for good;
* the recorder flushed before a pool process or the worker exits;
* the batch tasks' last partial batches handed over on a warm shutdown, from the
  loader's ``on_worker_shutdown``, which Celery calls after its event loop ends and
  before it closes the pool (:func:`~app.jobs.batches.hand_over`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.exceptions import InvalidTaskError, Reject
from celery.worker.consumer import Consumer

from app.celery import app
from app.jobs.batches import hand_over
from app.jobs.delivery import deliveries
from app.jobs.heartbeat import Heartbeat
from app.jobs.lifecycle import close_recorder
from app.jobs.logs import use_json_lines
from app.jobs.releaser import Releaser
from app.jobs.task import ConveyorTask
from config.settings import get_settings

logger = logging.getLogger(__name__)


class ConveyorConsumer(Consumer):
    """The worker's consumer: no malformed task message stops it, and its task events go
    out in batches, without publisher confirms.

    A plain Celery worker buffers task events and sends what it has on each turn
    of its event loop: about one message per event, three per task (received,
    started, succeeded), each a broker round trip on the loop that also
    dispatches and acknowledges tasks. This one sends them at most every
    ``worker.events_flush_s`` (0.1 s), or sooner when 24 have gathered (Celery's
    ``buffer_limit``), in one ``task.multi`` message that Flower and every event
    receiver unpack as before, and sends what is left when it shuts down.

    ``confirm_publish`` is a connection-wide transport option, so a plain Celery
    worker also waits for RabbitMQ to confirm each batch of task events, and its
    event loop stands still for that round trip. Events are monitoring for Flower,
    not jobs (the ledger is the record of every job), so the connection the worker
    opens for them alone is made without confirms. Task messages and retries keep
    theirs.
    """

    # Celery's, which its type stubs leave out.
    hub: Any
    connection_errors: tuple[type[BaseException], ...]
    _flush_events: Callable[[], None]
    #: When the flush already asked of the loop's timer is due (monotonic), or None.
    _events_due: float | None = None

    def on_send_event_buffered(self) -> Any:
        """A task event was buffered: send the buffer within ``worker.events_flush_s``."""
        delay = get_settings().worker.events_flush_s
        if not self.hub or not delay:
            super().on_send_event_buffered()
            return
        now = time.monotonic()
        # A flush a second overdue was lost with its timer (a consumer restart): ask again.
        if self._events_due is None or now > self._events_due + 1:
            self._events_due = now + delay
            self.hub.call_later(delay, self._flush_due_events)

    def _flush_due_events(self) -> None:
        self._events_due = None
        self._flush_events()

    def shutdown(self) -> None:
        """Send the events still buffered, then shut down as Celery does."""
        try:
            self._flush_events()
        except Exception as exc:  # the broker is gone: they were monitoring only
            logger.warning("task events not sent at shutdown: %s", exc)
        super().shutdown()

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """Celery's handler of task messages, which no message can take the worker down with.

        Celery sets aside a message it cannot decode or does not know, but an exception
        its strategy raises for a malformed one (a body of a type it does not expect,
        such as ``application/data``, which kombu passes through undecoded) ends the
        worker, and the message, still queued, ends the next one too. Here such a
        message is rejected (not requeued) and logged with the reason, as Celery does
        for an invalid task, and the worker goes on consuming.
        """
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except Exception as exc:
                # The connection's, not the message's: Celery reconnects. (kombu counts
                # KeyError among Redis's connection errors; here it is the message's: a
                # missing header, which would otherwise come back with each reconnection.)
                if isinstance(exc, self.connection_errors) and not isinstance(exc, LookupError):
                    raise
                reason = f"{type(exc).__name__}: {exc}"
                return self.on_invalid_task(None, message, InvalidTaskError(reason))

        return on_task_received

    def connection_for_write(self, url: str | None = None, heartbeat: Any = None) -> Any:
        """The events connection (Celery's ``Events`` bootstep is its only caller)."""
        return self.ensure_connected(
            self.app.connection_for_write(
                url=url, heartbeat=heartbeat, transport_options={"confirm_publish": False}
            )
        )


_threads: list[Releaser | Heartbeat] = []

# JSON log lines when ``log.format`` says so, on the handlers Celery set up (app/jobs/logs.py).
signals.after_setup_logger.connect(use_json_lines)
signals.after_setup_task_logger.connect(use_json_lines)


def _ours(worker: Any) -> bool:
    """True for a worker of the Conveyor app (not another Celery app in this process)."""
    return worker is not None and getattr(worker, "app", None) is app


@signals.worker_init.connect
def _freeze_startup_objects(sender: Any = None, **_: Any) -> None:
    """Keep the garbage collector off what the worker built at startup (``gc.freeze``).

    Every module, task and setting the worker imported lives as long as the
    process: the collector's full passes need not walk them in the main process
    nor in the pool processes forked from it, which also keep those pages shared.
    """
    if _ours(sender):
        gc.freeze()


@signals.worker_init.connect
def _hand_over_batches_on_shutdown(sender: Any = None, **_: Any) -> None:
    if not _ours(sender):
        return
    loader = sender.app.loader
    shutting_down = loader.on_worker_shutdown

    def on_worker_shutdown() -> None:
        hand_over(sender.consumer)
        shutting_down()

    loader.on_worker_shutdown = on_worker_shutdown


@signals.worker_ready.connect
def _start_threads(sender: Any = None, **_: Any) -> None:
    """Every worker publishes held jobs when due (they share the work, never duplicate
    it), heartbeats, and requeues jobs that silent workers left running."""
    if not _ours(sender):
        return
    queues = [queue.name for queue in sender.task_consumer.queues]
    # On Redis the heartbeat also looks after unacknowledged messages (app/jobs/unacked.py).
    on_redis = sender.connection.transport.driver_type == "redis"
    _threads.extend([Releaser(app), Heartbeat(sender.hostname, queues, app if on_redis else None)])
    for thread in _threads:
        thread.start()


@signals.worker_shutdown.connect
def _stop_threads(**_: Any) -> None:
    for thread in _threads:
        thread.stop()
    close_recorder()


@signals.worker_process_shutdown.connect
def _flush_pool_process(**_: Any) -> None:
    # Pool processes leave through os._exit, so atexit never runs there: flush first.
    close_recorder()


@signals.task_revoked.connect
def _revoked(sender: Any = None, request: Any = None, terminated: bool = False, **_: Any) -> None:
    if isinstance(sender, ConveyorTask):
        deliveries.revoked(request, terminated)


@signals.task_failure.connect
def _rejected(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any
) -> None:
    """A message rejected without requeue never runs again: Celery reports it with this
    signal alone, not with the task's ``on_failure``."""
    if isinstance(sender, ConveyorTask) and isinstance(exception, Reject) and task_id:
        deliveries.failed(sender, exception, task_id, None)
