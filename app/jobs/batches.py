"""Batch tasks: each ``delay()`` is a job of its own, and the worker runs them in batches.

::

    @app.task(base=BatchTask, flush_every=100, flush_interval=0.2)
    def insert_orders(items: list[Item]) -> None:
        Order.objects.bulk_create(Order(**item.kwargs) for item in items)

    insert_orders.delay(sku="A-1", quantity=2)   # one job, one ledger row

The worker's main process buffers the task's messages and hands them to a pool
process as one batch once ``flush_every`` have arrived or ``flush_interval`` seconds
after the first, whichever comes first. (Celery's own default strategy receives each
message, so expiry, revocation, events and ETAs work as for any task; only the last
step, handing the request to the pool, goes to the buffer instead.) There, each job
goes through the same delivery path as any other (:mod:`app.jobs.delivery`):

1. each job is claimed at the delivery gate; a duplicate, a finished job or a job
   over its delivery cap drops out of the batch, as it would alone;
2. the task's function runs once with the claimed jobs, as :class:`Item` objects. A job
   delivered before (its worker died with it) runs alone, so that a job that kills
   its worker cannot take a whole batch with it again;
3. if the batch raises, each job runs alone (:func:`app.batching.handle_batch`), so
   only a bad job fails; it is retried (its own next attempt, under the task's retry
   policy) or dead-lettered alone, and the others complete;
4. each job's outcome is settled, and only then are the batch's messages
   acknowledged, by the main process.

Buffered jobs count against the worker's prefetch window only up to ``capacity``
(default: twice ``flush_every``): the worker widens its window for them as Celery
does for ETA tasks, so batching neither starves its other queues nor holds more than
``capacity`` jobs; past it, the broker keeps the rest (backpressure; nothing is
dropped). On a warm shutdown (SIGTERM) the last partial batch is handed over and
settled before the pool closes (:func:`hand_over`). A batch's time limits are the
task's, for the whole batch; a batch task has no rate limit of its own.

``celery-batches`` buffers a task's messages the same way, but supports Celery below
5.7 only and settles a batch as a whole (one outcome, acknowledgements for all), so
Conveyor does the buffering itself, in the few lines of the main process's side here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from billiard.einfo import ExceptionInfo
from celery._state import _task_stack  # type: ignore[attr-defined]
from celery.app.task import Context
from celery.exceptions import Ignore, Retry
from celery.utils.time import get_exponential_backoff_interval
from celery.worker.state import task_accepted, task_ready, task_reserved
from celery.worker.strategy import default as default_strategy
from kombu.common import ignore_errors

from app.batching import Outcome, handle_batch
from app.jobs.delivery import deliveries
from app.jobs.task import ConveyorTask

logger = logging.getLogger(__name__)

#: What the main process does with each message of a batch, from the pool's answer.
ACK, REQUEUE = "ack", "requeue"


class Job(NamedTuple):
    """A request as the main process hands it to a pool process."""

    request: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    delivery_info: dict[str, Any]
    hostname: str


@dataclass
class Item:
    """One job of a batch, as the task's function sees it."""

    #: The job's id: its ledger row.
    id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: 1 on the first attempt, 2 on the first retry…
    attempt: int
    #: How many times this attempt has been delivered.
    deliveries: int = 1
    context: Context = field(default_factory=Context, repr=False, compare=False)


class BatchTask(ConveyorTask):
    """A task whose jobs run in batches; its function takes a ``list[Item]`` and returns
    None or one result per item, in order."""

    #: A batch is handed over once it holds this many jobs…
    flush_every = 100
    #: …or this many seconds after the first job arrived.
    flush_interval = 1.0
    #: The most jobs of this task one worker holds, buffered or in a batch that runs
    #: (None: twice ``flush_every``).
    capacity: int | None = None
    typing = False

    # -- the worker's main process -------------------------------------------

    def Strategy(  # type: ignore[override]
        self, task: Any, app: Any, consumer: Any
    ) -> Callable[..., None]:
        """Celery's default strategy, its requests handed to this task's buffer."""
        self._buffer: list[Any] = []
        #: Jobs held (buffered, or in a batch not yet settled), and how far the
        #: prefetch window is widened for them.
        self._held = self._room = 0
        self._timer: Any = None
        self._consumer: Any = consumer
        if self not in flushers:
            flushers.append(self)
        strategy: Callable[..., None] = default_strategy(task, app, _Buffering(consumer, self))
        return strategy

    def buffer(self, request: Any) -> None:
        """Take a request the strategy received; hand the batch over once it is full."""
        self._buffer.append(request)
        self._held += 1
        capacity = self.capacity or 2 * self.flush_every
        if self._held > self._room and self._room < capacity:
            # Widened a batch at a time: a window that grows by one message per message
            # received lets RabbitMQ send them one round trip apart.
            grow = min(self.flush_every, capacity - self._room)
            self._room += grow
            self._consumer.qos.increment_eventually(grow)
        if len(self._buffer) >= self.flush_every:
            self.flush()
        elif self._timer is None:
            self._timer = self._consumer.timer.call_after(self.flush_interval, self._due)

    def _due(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> list[Any]:
        """Hand what is buffered to the pool, in batches of at most ``flush_every``; the
        pool's results, one per batch."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        requests, self._buffer = self._buffer, []
        return [
            self._apply(requests[start : start + self.flush_every])
            for start in range(0, len(requests), self.flush_every)
        ]

    def _let_go(self, requests: list[Any]) -> None:
        for request in requests:
            task_ready(request)
        self._held -= len(requests)
        if self._held == 0 and self._room:
            self._consumer.qos.decrement_eventually(self._room)
            self._room = 0

    def _apply(self, requests: list[Any]) -> Any:
        def accepted(pid: int, time_accepted: float) -> None:
            for request in requests:
                task_accepted(request)

        def settled(answers: Any) -> None:
            if not isinstance(answers, list) or len(answers) != len(requests):
                logger.error("%s: a batch of %d left no answer: requeued", self.name, len(requests))
                answers = [REQUEUE] * len(requests)
            try:
                for request, answer in zip(requests, answers, strict=True):
                    if answer == REQUEUE:
                        request.reject(requeue=True)
                    else:
                        request.acknowledge()
            finally:
                self._let_go(requests)

        def lost(einfo: Any) -> None:
            # The pool process died (a hard time limit, out of memory): each job's claim
            # says, when it is delivered again, whether it ran; jobs delivered before run
            # alone then.
            logger.error("%s: a batch of %d lost its process: %s", self.name, len(requests), einfo)
            settled([REQUEUE] * len(requests))

        conf = self.app.conf
        jobs = [
            Job(r.request_dict, r.args, r.kwargs, r.delivery_info, r.hostname) for r in requests
        ]
        return self._consumer.pool.apply_async(
            _run_batch,
            (self, jobs),
            accept_callback=accepted,
            callback=settled,
            error_callback=lost,
            timeout=self.time_limit or conf.task_time_limit,
            soft_timeout=self.soft_time_limit or conf.task_soft_time_limit,
        )

    # -- a pool process ------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Called directly (or eagerly): the function, with no claim or ledger."""
        return self._body()(*args, **kwargs)

    def _body(self) -> Callable[..., Any]:
        # Celery wraps ``run`` for ``autoretry_for``; a batch retries each job itself.
        return getattr(self, "_orig_run", self.run)

    def run_batch(self, jobs: list[Job]) -> list[str]:
        """Claim, run and settle one batch; what to do with each message, in order."""
        items: list[Item] = []
        for job in jobs:
            item = self._claim(job)
            if isinstance(item, Outcome):
                self._settle(item)
            elif item is not None:
                items.append(item)
        again = [item for item in items if item.deliveries > 1]
        fresh = [item for item in items if item.deliveries <= 1]
        for batch in ([fresh] if fresh else []) + [[item] for item in again]:
            for outcome in handle_batch(batch, self._handle):
                self._settle(outcome)
        # Refused, settled, retried: each message is done with (a duplicate of a held
        # job was published again for later by its claim).
        return [ACK] * len(jobs)

    def _claim(self, job: Job) -> Item | Outcome[Item] | None:
        """The job as an :class:`Item` if it may run, None if its claim refused it, or a
        failed outcome if claiming raised."""
        context = Context(
            job.request,
            args=list(job.args),
            kwargs=dict(job.kwargs),
            delivery_info=job.delivery_info,
            hostname=job.hostname,
            called_directly=False,
            is_eager=False,
        )
        item = Item(
            id=str(context.id),
            args=tuple(job.args),
            kwargs=dict(job.kwargs),
            attempt=int(context.retries or 0) + 1,
            context=context,
        )
        self.request_stack.push(context)
        try:
            item.deliveries = deliveries.begin(self, item.args, item.kwargs) or 1
        except Ignore:
            return None
        except Exception as exc:
            return Outcome(item, error=exc)
        finally:
            self.request_stack.pop()
        return item

    def _handle(self, batch: list[Item]) -> Any:
        """The task's function on ``batch``; a batch of one runs as its job (log lines
        carry its id)."""
        if len(batch) != 1:
            return self._body()(batch)
        self.request_stack.push(batch[0].context)
        try:
            return self._body()(batch)
        finally:
            self.request_stack.pop()

    def _settle(self, outcome: Outcome[Item]) -> None:
        """The job's outcome, as the hooks of a delivery of its own would settle it."""
        item = outcome.item
        self.request_stack.push(item.context)
        try:
            if outcome.error is None:
                deliveries.succeeded(self, outcome.result)
            elif not self._retried(outcome.error):
                return
            deliveries.ended(item.id)
        finally:
            self.request_stack.pop()

    def _retried(self, exc: BaseException) -> bool:
        """Retry the current job under the task's policy, or settle it failed; False once
        a retry is scheduled (which lets go of the job itself)."""
        request = self.request
        if isinstance(exc, self.autoretry_for) and not isinstance(
            exc, tuple(getattr(self, "dont_autoretry_for", ()))
        ):
            countdown = None
            backoff = getattr(self, "retry_backoff", False)
            if backoff:
                countdown = get_exponential_backoff_interval(
                    factor=int(max(1.0, float(backoff))),
                    retries=int(request.retries or 0),
                    maximum=int(getattr(self, "retry_backoff_max", 600)),
                    full_jitter=self.retry_jitter,
                )
            try:
                self.retry(exc=exc, countdown=countdown)
            except Retry:
                deliveries.retried(self, exc)
                return False
            except Exception as final:  # the last retry is spent: the error stands
                exc = final
        einfo = ExceptionInfo((type(exc), exc, exc.__traceback__))
        deliveries.failed(self, exc, str(request.id), einfo)
        return True


def _run_batch(task: BatchTask, jobs: list[Job]) -> list[str]:
    """The pool process's side of :meth:`BatchTask.flush`, with ``task`` current (log
    lines and ``current_task`` see it, as in any task)."""
    _task_stack.push(task)
    try:
        return task.run_batch(jobs)
    except Exception:
        logger.exception("%s: a batch of %d failed to settle; requeued", task.name, len(jobs))
        return [REQUEUE] * len(jobs)
    finally:
        _task_stack.pop()


class _Buffering:
    """The consumer as Celery's default strategy sees it, but for where a request goes
    when it may run: to the batch task's buffer instead of the pool."""

    #: A batch task has no rate limit: a limited request would skip the buffer.
    disable_rate_limits = True

    def __init__(self, consumer: Any, task: BatchTask) -> None:
        self._consumer = consumer
        self.on_task_request = task.buffer

    def apply_eta_task(self, request: Any) -> None:
        """A request whose ETA is due (``Consumer.apply_eta_task``, to the buffer)."""
        task_reserved(request)
        self.on_task_request(request)
        self._consumer.qos.decrement_eventually()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


#: This process's batch tasks with a strategy (the worker's main process).
flushers: list[BatchTask] = []


def hand_over(consumer: Any) -> None:
    """On a warm shutdown, hand every batch task's last partial batch to the pool, and
    run the event loop until each is settled and acknowledged (or the batch time limit
    has passed).

    Called when the worker has left its event loop and not yet closed its pool (the
    loader's ``on_worker_shutdown``, :mod:`app.jobs.worker`): the pool's pipes are
    written from that loop, so this runs it a while longer.
    """
    if not any(task._buffer for task in flushers):
        return
    if consumer.task_consumer is not None:
        ignore_errors(consumer, consumer.task_consumer.cancel)  # nothing more comes in
    pending: list[Any] = []
    for task in flushers:
        try:
            if task._buffer:
                logger.info("%s: handing over its last %d job(s)", task.name, len(task._buffer))
                pending += [result for result in task.flush() if result is not None]
        except Exception:
            logger.exception("%s: its last batch was not handed over", task.name)
    if consumer.hub is None:
        return
    limit = max((task.time_limit or consumer.app.conf.task_time_limit or 60) for task in flushers)
    deadline = time.monotonic() + float(limit)
    loop = consumer.hub.create_loop()
    while not all(result.ready() for result in pending):
        if time.monotonic() > deadline:
            logger.warning("the last batches did not settle in %s s", limit)
            return
        next(loop)
