"""The services runtime: long-running work in supervised loops (``python -m app services``).

Write a service as a :class:`Service` subclass (``every`` and ``iterate()``), a
:class:`PollService` subclass (``poll()`` and ``process()``), a bounded parallel
consumer (a :class:`ConsumerService` subclass: ``fetch()`` and ``handle(item)``, at
most ``parallelism`` items at once and ``capacity`` waiting), or a function under
``@service(name=…, every="30s" | poll=find, mode="every_host" | "singleton")`` or
``@consumer_service(name=…, fetch=find)``, in a module named in ``services.modules``. The
runtime (:mod:`app.services.supervisor`) runs each in its own thread, with a
heartbeat and a state row in the ``services`` table (:mod:`app.services.store`),
exponential backoff after errors and, after ``services.max_consecutive_errors`` in a
row, a ``failed`` service and an exit non-zero for the process supervisor to restart.
A singleton runs on one host at a time, through a lease (:mod:`app.lease`), and
checks it before each iteration. Monitors raise deduplicated alerts through
:mod:`app.services.alerts`.
"""

from __future__ import annotations

from app.services.base import InvalidService, Mode, PollService, Service, service
from app.services.consumer import ConsumerService, ItemsFailed, consumer_service
from app.services.states import ServiceState

__all__ = [
    "ConsumerService",
    "InvalidService",
    "ItemsFailed",
    "Mode",
    "PollService",
    "Service",
    "ServiceState",
    "consumer_service",
    "service",
]
