"""Services the acceptance tests run in real ``python -m app services`` processes.

Each iteration writes effect rows (:func:`tests.acceptance.probe_tasks.effect`): a
``start`` row and, when it completes, an ``end`` row, under a key naming the
service, the process and the iteration (``probe.slow:4242:3``), so a test pairs
them into intervals and sees from the database's clock when each iteration ran.
``CONVEYOR_TEST_ITERATION_S`` sets how long an iteration of ``probe.slow`` and
``probe.singleton`` takes; ``CONVEYOR_TEST_DOOMED_OK=1`` makes ``probe.doomed`` succeed.
"""

from __future__ import annotations

import itertools
import os
import time

from app.services import Mode, Service, service
from tests.acceptance.probe_tasks import effect

_iterations = itertools.count(1)


def iteration_s() -> float:
    """How long one iteration of the slow probes takes."""
    return float(os.environ.get("CONVEYOR_TEST_ITERATION_S", "0.5"))


def timed(name: str) -> int:
    """One iteration that writes its start, takes :func:`iteration_s`, and writes its end."""
    key = f"{name}:{os.getpid()}:{next(_iterations)}"
    effect(key, "start")
    time.sleep(iteration_s())
    effect(key, "end")
    return 1


class Slow(Service):
    """Every host: iterations that take a while (the shutdown tests)."""

    name = "probe.slow"
    every = 0.2

    def iterate(self) -> int:
        return timed(self.name)


class Singleton(Service):
    """One host at a time: iterations that take a while (the lease tests)."""

    name = "probe.singleton"
    mode = Mode.SINGLETON
    every = 0.2

    def iterate(self) -> int:
        return timed(self.name)


@service(name="probe.broken", every=0.05)
def broken() -> int:
    """Fails every time, after writing its start (the backoff test); a decorated function."""
    effect(f"probe.broken:{os.getpid()}", "start")
    raise RuntimeError("probe.broken fails on purpose")


class Doomed(Service):
    """A singleton that fails every time, unless ``CONVEYOR_TEST_DOOMED_OK=1``."""

    name = "probe.doomed"
    mode = Mode.SINGLETON
    every = 0.05

    def iterate(self) -> int:
        effect(f"probe.doomed:{os.getpid()}", "start")
        if os.environ.get("CONVEYOR_TEST_DOOMED_OK") != "1":
            raise RuntimeError("probe.doomed fails on purpose")
        return 1


class Sluggish(Service):
    """Every host: fails every time (with a long backoff, it stays degraded)."""

    name = "probe.sluggish"
    every = 0.1

    def iterate(self) -> int:
        effect(f"probe.sluggish:{os.getpid()}", "start")
        raise RuntimeError("probe.sluggish fails on purpose")
