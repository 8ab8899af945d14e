"""Auto-batching: items handled in batches of at most ``size``, or after ``wait_s``.

Many small items are cheaper handled together (one bulk insert, one API call for
a hundred). Two things batch them:

* :class:`Batcher`, in a process: producers :meth:`~Batcher.put` items into a
  bounded buffer, and a thread hands them to ``handle`` in batches. A full buffer
  blocks the producer (backpressure); nothing is dropped. :meth:`~Batcher.close`
  (and the process's exit) hands over the last partial batch.
* :class:`app.jobs.batches.BatchTask`, for jobs: each ``delay()`` is a job of its
  own in the ledger, and the worker hands the jobs to the task in batches.

Both settle a batch with :func:`handle_batch`: ``handle(items)`` once, and when it
raises, ``handle([item])`` for each item, so that only a bad item fails, alone.
``handle`` returns None, or one result per item, in order.

This module is a leaf: it imports nothing of Conveyor's.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What became of one item of a batch: its result, or the error it failed with."""

    item: T
    result: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class BatchResultMismatch(TypeError):
    """``handle`` returned something other than None or one result per item."""


def _results(returned: Any, count: int) -> list[Any]:
    if returned is None:
        return [None] * count
    if isinstance(returned, list | tuple) and len(returned) == count:
        return list(returned)
    raise BatchResultMismatch(
        f"a batch handler returns None or a list of one result per item: got "
        f"{type(returned).__name__} for {count} item(s)"
    )


def handle_batch(items: Sequence[T], handle: Callable[[list[T]], Any]) -> list[Outcome[T]]:
    """Each item's outcome: ``handle(items)``, or, if that raises, ``handle([item])`` for
    each item in turn (a batch of one is not tried twice)."""
    batch = list(items)
    if not batch:
        return []
    try:
        results = _results(handle(batch), len(batch))
    except Exception as exc:
        if len(batch) == 1:
            return [Outcome(batch[0], error=exc)]
        logger.warning(
            "batch of %d failed (%s: %s): each item alone", len(batch), type(exc).__name__, exc
        )
    else:
        return [Outcome(item, result) for item, result in zip(batch, results, strict=True)]
    outcomes: list[Outcome[T]] = []
    for item in batch:
        try:
            outcomes.append(Outcome(item, _results(handle([item]), 1)[0]))
        except Exception as exc:
            outcomes.append(Outcome(item, error=exc))
    return outcomes


#: The batchers of this process whose thread has started.
_open: weakref.WeakSet[Batcher[Any]] = weakref.WeakSet()


def close_all(timeout_s: float | None = None) -> bool:
    """Close every batcher of this process, handing over what each holds, within
    ``timeout_s`` in all; True once all is handled. The services runtime calls it as
    its services stop; otherwise it runs at the process's exit."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done = True
    for batcher in list(_open):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = batcher.close(left) and done
    return done


atexit.register(close_all)


class BatcherClosed(RuntimeError):
    """An item was put into a :class:`Batcher` after :meth:`~Batcher.close`."""


def _log_failure(item: Any, error: BaseException) -> None:
    logger.error("batch item %r failed: %s: %s", item, type(error).__name__, error)


class Batcher(Generic[T]):
    """A bounded buffer whose items a thread of its own hands to ``handle`` in batches.

    A batch is handed over when it holds ``size`` items, or ``wait_s`` after its
    first item arrived, whichever comes first. ``on_failure(item, error)`` is called
    for each item that failed alone (by default, it is logged). The thread starts
    with the first :meth:`put`; :meth:`close`, the ``with`` block's end, the services
    runtime's stop or the process's exit (:func:`close_all`) hands over what is left.
    """

    def __init__(
        self,
        handle: Callable[[list[T]], Any],
        *,
        size: int = 100,
        wait_s: float = 0.1,
        capacity: int = 10_000,
        on_failure: Callable[[T, BaseException], None] = _log_failure,
        name: str = "batcher",
    ) -> None:
        if size < 1:
            raise ValueError(f"a batch holds at least 1 item (size={size})")
        if capacity < size:
            raise ValueError(f"capacity ({capacity}) must hold a whole batch (size={size})")
        if not wait_s > 0:
            raise ValueError(f"wait_s must be positive (got {wait_s})")
        self.handle, self.size, self.wait_s = handle, size, wait_s
        self.on_failure, self.name = on_failure, name
        self._queue: queue.Queue[T] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._putting = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Batches handed over, items handled, items that failed, the largest batch.
        self.batches = self.handled = self.failed = self.largest = 0

    # -- the producers' side -------------------------------------------------

    def put(self, item: T, timeout: float | None = None) -> None:
        """Add ``item``; while the buffer is full, wait (up to ``timeout``, then
        :class:`queue.Full`). :class:`BatcherClosed` once the batcher is closed."""
        with self._lock:
            if self._closed:
                raise BatcherClosed(f"{self.name} is closed: {item!r} was not taken")
            self._putting += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
                _open.add(self)
        try:
            self._queue.put(item, timeout=timeout)
        finally:
            with self._lock:
                self._putting -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Take no more items and hand over what is buffered; True once all is handled."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> Batcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Items buffered, not yet handed over."""
        return self._queue.qsize()

    # -- the batcher's thread --------------------------------------------------

    def _done(self) -> bool:
        with self._lock:
            return self._closed and self._putting == 0 and self._queue.empty()

    def _collect(self) -> list[T]:
        """The next batch: up to ``size`` items, within ``wait_s`` of the first (or, once
        the batcher is closing, what is there)."""
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=min(left, 0.05)))
            except queue.Empty:
                if self._closed:
                    break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                self._settle(batch)
            elif self._done():
                return

    def _settle(self, batch: list[T]) -> None:
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        for outcome in handle_batch(batch, self.handle):
            if outcome.error is None:
                self.handled += 1
                continue
            self.failed += 1
            try:
                self.on_failure(outcome.item, outcome.error)
            except Exception:
                logger.exception("%s: on_failure for %r raised", self.name, outcome.item)
