"""A bounded parallel consumer: a poll service whose items are handled by a thread pool.

A :class:`ConsumerService` (or a function under :func:`consumer_service`) gives
``fetch()``, which returns the items waiting (a list, or a lazy iterable such as a
generator over a cursor or a stream; empty when there are none), and
``handle(item)``, which handles one. Each iteration of its poll loop is one pass over
what one ``fetch()`` returned:

* at most ``parallelism`` items are handled at once, each in a thread of the
  iteration's :class:`~concurrent.futures.ThreadPoolExecutor`;
* between the fetch and the workers, at most ``capacity`` items wait: while that
  many are waiting, the fetcher (the service's own thread) blocks before it takes the
  next item from the iterable. Nothing is dropped: an item taken from the source is
  always handled;
* when the service stops (a signal, another service's failure, a singleton's lost
  lease: :attr:`~app.services.base.Service.stopping`), the fetcher takes no further
  item; the items already taken, waiting or running, are finished, then the
  iteration returns. Like any iteration, that has ``services.grace_s`` to happen;
* the iteration returns when every item it took is finished, so ``fetch()`` is only
  ever called with nothing in flight: it may return items not yet marked done.

**An item whose** ``handle`` **raises** is logged at ERROR with the item (its
``repr()``, cut to 200 characters) and the traceback, and counted in the row's
``detail.service.failed``; the others go on. The consumer neither retries it nor
keeps it: whether it comes back is the source's business (a row its handler did not
mark done is fetched again). The iteration counts only the items that succeeded
(``items_processed``), and it is an **error** of the service, with the runtime's
backoff, ``degraded`` state and, after ``services.max_consecutive_errors`` in a row,
``failed``, when nothing got through: every item it took failed (it raises
:class:`ItemsFailed`), or ``fetch()`` or its iterable raised before any item
succeeded (that error is raised). An iteration in which some items succeeded is a
success, so that one bad item among good ones does not stop the service; the failures
are in the log and on the row. A fetch error after some items succeeded is logged, and the next
iteration's fetch shows whether the source is still broken.

The runtime (:mod:`app.services.runner`) runs a consumer as any poll service: its
heartbeat, row, states, modes and poll delays are the runtime's.
"""

from __future__ import annotations

import logging
import reprlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from app.errors import ConveyorError
from app.services.base import Duration, InvalidService, Mode, PollService

logger = logging.getLogger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: The defaults of ``parallelism`` and ``capacity``.
PARALLELISM = 4
CAPACITY = 16

#: How items and errors are shown in logs and on the row: ``repr()`` cut to 200
#: characters (so a NUL, which PostgreSQL's text and jsonb refuse, is escaped).
shown = reprlib.Repr()
shown.maxstring = shown.maxother = 200


class ItemsFailed(ConveyorError, RuntimeError):
    """Every item a consumer's iteration took failed; names the service, the count and
    the last error."""

    def __init__(self, name: str, failed: int, last: BaseException) -> None:
        self.name = name
        self.failed = failed
        super().__init__(
            f"service {name!r}: all {failed} item(s) failed; the last: {shown.repr(last)}"
        )


class _Tally:
    """What one iteration's items came to; the workers add to it under its lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0
        self.last_error: BaseException | None = None


class ConsumerService(PollService[Iterable[T]]):
    """A poll service that handles its items in parallel: write :meth:`fetch` and
    :meth:`handle`; set ``parallelism`` and ``capacity`` (see the module's docstring)."""

    #: The most items handled at once (the pool's threads), at least 1.
    parallelism: ClassVar[int] = PARALLELISM
    #: The most items taken from the source and waiting for a worker, at least 0 (0: the
    #: fetcher takes an item only when a worker is free).
    capacity: ClassVar[int] = CAPACITY

    # Totals since the process started the service, shown in ``detail`` (class defaults:
    # a subclass's ``__init__`` need not call ours).
    _succeeded_total: int = 0
    _failed_total: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.__dict__.get("name"):  # checked before the base class registers it
            for what, least in (("parallelism", 1), ("capacity", 0)):
                value = getattr(cls, what)
                if isinstance(value, bool) or not isinstance(value, int) or value < least:
                    raise InvalidService(
                        cls.name, f"{what} must be an integer of at least {least}, not {value!r}"
                    )
        super().__init_subclass__(**kwargs)

    def fetch(self) -> Iterable[T]:
        """The items waiting, or an empty iterable when there are none."""
        raise NotImplementedError(f"service {self.name!r} defines no fetch()")

    def handle(self, item: T) -> object:
        """Handle one item (in a worker thread); raise if it failed. A value is ignored."""
        raise NotImplementedError(f"service {self.name!r} defines no handle()")

    def poll(self) -> Iterable[T]:
        """What :meth:`fetch` returns (the poll loop's poll)."""
        return self.fetch()

    def process(self, work: Iterable[T]) -> int:
        """Handle ``work``'s items, ``parallelism`` at once; how many succeeded."""
        tally = _Tally()
        # Each item holds a slot from when the fetcher takes it until it is finished.
        slots = threading.BoundedSemaphore(self.parallelism + self.capacity)
        with ThreadPoolExecutor(
            max_workers=self.parallelism, thread_name_prefix=f"service:{self.name}:worker"
        ) as pool:
            fetch_error = self._feed(iter(work), pool, slots, tally)
        # The pool's exit waited for every item submitted: none is in flight now.
        if tally.succeeded:
            if fetch_error is not None:
                logger.error(
                    "service %s: its fetch failed after %d item(s) succeeded",
                    self.name,
                    tally.succeeded,
                    exc_info=fetch_error,
                )
            return tally.succeeded
        if fetch_error is not None:
            raise fetch_error
        if tally.last_error is not None:
            raise ItemsFailed(self.name, tally.failed, tally.last_error) from tally.last_error
        return 0

    def _feed(
        self,
        items: Iterator[T],
        pool: ThreadPoolExecutor,
        slots: threading.BoundedSemaphore,
        tally: _Tally,
    ) -> Exception | None:
        """Take items and submit them until the iterable ends or the service stops; the
        error the iterable raised, if it did."""
        while True:
            slots.acquire()  # blocks while parallelism + capacity items are outstanding
            if self.stopping:
                slots.release()
                return None
            try:
                item = next(items)
            except StopIteration:
                slots.release()
                return None
            except Exception as exc:  # the source broke: what was taken still finishes
                slots.release()
                return exc
            pool.submit(self._handle_one, item, slots, tally)

    def _handle_one(self, item: T, slots: threading.BoundedSemaphore, tally: _Tally) -> None:
        try:
            self.handle(item)
        except Exception as exc:
            logger.error("service %s: item %s failed", self.name, shown.repr(item), exc_info=True)
            self._count(tally, item, exc)
        else:
            self._count(tally, item, None)
        finally:
            slots.release()

    def _count(self, tally: _Tally, item: T, error: Exception | None) -> None:
        """Add one finished item to the iteration's tally and to the row's detail."""
        with tally.lock:
            if error is None:
                tally.succeeded += 1
                self._succeeded_total += 1
            else:
                tally.failed += 1
                tally.last_error = error
                self._failed_total += 1
            detail: dict[str, Any] = {
                **(self.detail or {}),
                "parallelism": self.parallelism,
                "capacity": self.capacity,
                "succeeded": self._succeeded_total,
                "failed": self._failed_total,
            }
            if error is not None:
                detail["last_failure"] = {"item": shown.repr(item), "error": shown.repr(error)}
            # A new dict each time: the heartbeat reads the one it finds.
            self.detail = detail


def consumer_service(
    *,
    name: str,
    fetch: Callable[[], Iterable[Any]],
    parallelism: int = PARALLELISM,
    capacity: int = CAPACITY,
    mode: Mode | str = Mode.EVERY_HOST,
    idle: Duration | None = None,
) -> Callable[[F], F]:
    """Register a function as the ``handle`` of a consumer service, and return it unchanged.

    ``fetch()`` returns the items waiting (empty when none); the function is called with
    each, ``parallelism`` at once, with at most ``capacity`` waiting. After an iteration
    that found nothing the loop waits longer each time, up to ``idle`` (default
    ``services.poll_idle_s``), as ``@service(poll=…)`` does.
    """

    def wrap(function: F) -> F:
        attrs: dict[str, Any] = {
            "name": name,
            "mode": mode,
            "idle": idle,
            "parallelism": parallelism,
            "capacity": capacity,
            "fetch": lambda self: fetch(),
            "handle": lambda self, item: function(item),
            "__module__": function.__module__,
            "__qualname__": function.__qualname__,
            "__doc__": function.__doc__,
        }
        type(function.__name__, (ConsumerService,), attrs)
        return function

    return wrap
