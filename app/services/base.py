"""What a service is, and how one registers: a :class:`Service` subclass or ``@service``.

A service is long-running work in a loop of iterations. Each iteration returns how
many items it processed (``None`` counts as 0). Two loops:

* **interval** (``every``): an iteration every N seconds, counted from the start of
  the previous one (never two at once, and none to catch up after a long one);
* **poll** (:class:`PollService`, ``@service(poll=…)``): ``poll()`` looks for work;
  when it finds some, ``process(work)`` handles it and the loop polls again soon
  (``services.poll_fast_s``); while it finds none, it waits longer after each empty
  poll, up to ``services.poll_idle_s`` (or the service's ``idle``).

And two modes: ``every_host`` runs on every host that runs ``python -m app
services``; ``singleton`` runs on one host of the cluster at a time, through a lease.

A concrete subclass (one that sets ``name``) registers itself when its module is
imported, as ``@app.task`` does for tasks; ``python -m app services`` imports the
modules named in ``services.modules``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sized
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from app.errors import ConveyorError, InvalidDuration
from app.schedule import parse_duration

#: The prefix of a singleton's lease name (``service:<name>``) and the lease table's
#: limit on names: a service name fits in what is left.
LEASE_PREFIX = "service:"
MAX_NAME_LENGTH = 50 - len(LEASE_PREFIX)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")

W = TypeVar("W")
F = TypeVar("F", bound=Callable[..., Any])
Duration = str | float | int | timedelta


class Mode(StrEnum):
    """Where a service runs."""

    EVERY_HOST = "every_host"
    SINGLETON = "singleton"


class Kind(StrEnum):
    """Which loop runs a service."""

    INTERVAL = "interval"
    POLL = "poll"


class InvalidService(ConveyorError, ValueError):
    """A service declared wrongly; the message names the service and what is wrong."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"service {name!r}: {reason}")


def seconds(value: Duration, name: str, what: str) -> float:
    """``value`` (seconds, a timedelta, or ``"30s"``, ``"5m"``…) in seconds, above 0."""
    if isinstance(value, str):
        try:
            value = parse_duration(value.strip())
        except InvalidDuration as exc:
            raise InvalidService(name, f"{what}: {exc}") from None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidService(name, f"{what} must be a positive duration, not {value!r}")
    return float(value)


class Service:
    """Long-running work: a subclass sets ``name`` and ``every`` and writes :meth:`iterate`.

    The runtime makes one instance per process and calls :meth:`iterate` in the
    service's own thread, never two at once. An iteration that raises counts as an
    error (see :mod:`app.services.backoff`). A long iteration checks
    :attr:`stopping` between items and returns early when it is set.
    """

    #: Unique, stable name, e.g. ``"catalog.inventory_monitor"`` (letters, digits and
    #: ``_.:-``, at most :data:`MAX_NAME_LENGTH` characters).
    name: ClassVar[str] = ""
    #: ``every_host`` or ``singleton``.
    mode: ClassVar[Mode | str] = Mode.EVERY_HOST
    #: Interval loop: the time between the starts of two iterations.
    every: ClassVar[Duration | None] = None
    kind: ClassVar[Kind] = Kind.INTERVAL
    #: What the service wants shown on its row (the API's and console's ``detail``):
    #: assign a new dict, never change the one in place (the heartbeat reads it).
    detail: dict[str, Any] | None = None

    _stop_check: Callable[[], bool] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            register(cls)

    def iterate(self) -> int | None:
        """One iteration; how many items it processed."""
        raise NotImplementedError(f"service {self.name!r} defines no iterate()")

    @property
    def stopping(self) -> bool:
        """True once this service should stop acting: its process is stopping, or (a
        singleton) it lost its lease."""
        return self._stop_check is not None and self._stop_check()

    @classmethod
    def interval_s(cls) -> float:
        """An interval loop's interval, in seconds."""
        assert cls.every is not None
        return seconds(cls.every, cls.name, "every")


class PollService(Service, Generic[W]):
    """A poll loop: :meth:`poll` for work, :meth:`process` what it found."""

    kind = Kind.POLL
    #: The longest wait after polls that found nothing; None: ``services.poll_idle_s``.
    idle: ClassVar[Duration | None] = None

    def poll(self) -> W | None:
        """Work to do, or None (or anything empty) when there is none."""
        raise NotImplementedError(f"service {self.name!r} defines no poll()")

    def process(self, work: W) -> int | None:
        """Handle what :meth:`poll` found; how many items (None: its length, or 1)."""
        raise NotImplementedError(f"service {self.name!r} defines no process()")

    def iterate(self) -> int:
        """Poll, and process what was found; 0 when nothing was."""
        work = self.poll()
        if not work:
            return 0
        done = self.process(work)
        if done is not None:
            return done
        return len(work) if isinstance(work, Sized) else 1

    @classmethod
    def idle_s(cls, default_s: float) -> float:
        """The wait after an empty poll, in seconds."""
        return default_s if cls.idle is None else seconds(cls.idle, cls.name, "idle")


_registry: dict[str, type[Service]] = {}


def register(cls: type[Service]) -> type[Service]:
    """Check ``cls`` and add it to the registry; :class:`InvalidService` if it is wrong."""
    name = cls.name
    if len(name) > MAX_NAME_LENGTH or not NAME.fullmatch(name):
        raise InvalidService(
            name,
            f"a name is letters, digits and _.:- (starting with a letter or digit), "
            f"at most {MAX_NAME_LENGTH} characters",
        )
    if cls.mode not in tuple(Mode):
        raise InvalidService(name, f"mode {cls.mode!r} is not one of {', '.join(Mode)}")
    if issubclass(cls, PollService):
        if cls.every is not None:
            raise InvalidService(name, "a poll service has no `every` (it polls; see `idle`)")
        cls.idle_s(1.0)
    elif cls.every is None:
        raise InvalidService(name, "an interval service needs `every` (e.g. every = '30s')")
    else:
        cls.interval_s()
    known = _registry.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise InvalidService(name, f"the name is taken by {known.__module__}.{known.__qualname__}")
    _registry[name] = cls
    return cls


def registered() -> dict[str, type[Service]]:
    """Every registered service class, by name."""
    return dict(_registry)


def service(
    *,
    name: str,
    every: Duration | None = None,
    poll: Callable[[], Any] | None = None,
    mode: Mode | str = Mode.EVERY_HOST,
    idle: Duration | None = None,
) -> Callable[[F], F]:
    """Register a function as a service, and return it unchanged.

    ``every="30s"``: the function is an iteration, called every 30 s.
    ``poll=find``: ``find()`` is called for work; when it returns some, the function is
    called with it and ``find()`` again soon; while it returns none, the loop waits
    longer each time, up to ``idle`` (default ``services.poll_idle_s``). The function
    returns the items it processed (None: the work's length, or 1).
    """
    if (every is None) == (poll is None):
        raise InvalidService(name, "give exactly one of every= (interval) or poll= (poll loop)")
    if idle is not None and poll is None:
        raise InvalidService(name, "idle= is the wait of a poll loop; an interval has every=")

    def wrap(function: F) -> F:
        attrs: dict[str, Any] = {
            "name": name,
            "mode": mode,
            "__module__": function.__module__,
            "__qualname__": function.__qualname__,
            "__doc__": function.__doc__,
        }
        if poll is not None:
            attrs.update(
                idle=idle,
                poll=lambda self: poll(),
                process=lambda self, work: function(work),
            )
            type(function.__name__, (PollService,), attrs)
        else:
            attrs.update(every=every, iterate=lambda self: function())
            type(function.__name__, (Service,), attrs)
        return function

    return wrap
