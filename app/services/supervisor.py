"""``python -m app services``: every registered service in one process, one thread each.

The process imports Conveyor's built-in service modules (unless
``services.builtins`` is off) and those named in ``services.modules``, then runs
each service in its own thread (:class:`~app.services.runner.ServiceRunner`) and
one heartbeat thread for all of them. It ends, and says how by its exit code:

* **0**, stopped: SIGTERM or SIGINT stops every loop; iterations that are running
  finish (within ``services.grace_s``), each row says ``stopped`` and each
  singleton's lease is given up, so that another host takes over at once;
* **1**, a service failed: it met ``services.max_consecutive_errors`` errors in a
  row (or its thread died). Its row says ``failed``, the failure is reported
  (:func:`app.services.failure.on_failed`), the other services stop as on SIGTERM,
  and the process exits for its supervisor (systemd, Compose, Kubernetes) to
  restart it. Also when the service modules cannot be imported;
* **3**, abandoned: an iteration was still running when the grace period ended (or
  a second SIGTERM or SIGINT came). Its row says ``stopped`` with the reason in its
  ``detail``, its lease expires by itself, and the process exits at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from app import batching
from app.db import engine
from app.lease import identity
from app.services import store
from app.services.base import Service, registered
from app.services.runner import ServiceRunner
from app.services.states import ServiceState
from config.settings import ServicesSettings, get_settings

logger = logging.getLogger(__name__)

EXIT_STOPPED = 0
EXIT_FAILED = 1
EXIT_ABANDONED = 3
#: Conveyor's own services, imported unless ``services.builtins`` is off.
BUILTIN_MODULES = ("app.services.census", "app.services.notifier")
#: Conveyor's monitors, built in too unless ``monitors.enabled`` is off.
MONITORS = "app.services.monitors"
#: Seconds between the main thread's looks at signals and failures.
TICK_S = 0.1


def discover(modules: Sequence[str]) -> dict[str, type[Service]]:
    """Import ``modules`` (each registers its services); every registered service."""
    for module in modules:
        importlib.import_module(module)
    return registered()


class Supervisor:
    """The services of one process: starts them, stops them, and chooses the exit code."""

    def __init__(self, services: Sequence[type[Service]], conf: ServicesSettings) -> None:
        self.conf = conf
        self.host = conf.host or socket.gethostname()
        self.me = identity(self.host)
        self.stop = threading.Event()
        self.signals = 0
        self.failed: list[str] = []
        self.runners = [
            ServiceRunner(cls, conf, self.host, self.me, self.stop, self._done) for cls in services
        ]
        self._heartbeat_stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)

    def run(self) -> int:
        """Run until a signal or a failure; the exit code (see the module's docstring)."""
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        self._forget_old_rows()
        for runner in self.runners:
            runner.start()
        self._heartbeat.start()
        names = ", ".join(runner.name for runner in self.runners) or "none"
        logger.info(
            "services: started on host %s as %s (%d): %s",
            self.host,
            self.me,
            len(self.runners),
            names,
        )
        while not (self.signals or self.stop.is_set()):
            time.sleep(TICK_S)
        self.stop.set()
        logger.info(
            "services: stopping (%s); iterations have %gs to finish",
            "a service failed" if self.failed else "signal",
            self.conf.grace_s,
        )
        for runner in self.runners:
            runner.wake()
        deadline = time.monotonic() + self.conf.grace_s
        abandoned = self._join(deadline)
        # What the stopped services put into batchers is handed over within the grace.
        if not batching.close_all(max(0.0, deadline - time.monotonic())):
            logger.warning("services: a batcher still held items after the grace period")
        why = (
            "a second signal came while an iteration ran"
            if self.signals >= 2
            else f"an iteration still ran after the {self.conf.grace_s:g}s grace period"
        )
        for runner in abandoned:
            runner.abandon(why)
        self._heartbeat_stop.set()
        self._heartbeat.join(timeout=10)
        code = EXIT_FAILED if self.failed else EXIT_ABANDONED if abandoned else EXIT_STOPPED
        failed = f"; failed: {', '.join(self.failed)}" if self.failed else ""
        left = f"; abandoned: {', '.join(r.name for r in abandoned)}" if abandoned else ""
        logger.info("services: exiting with code %d%s%s", code, failed, left)
        if abandoned:
            # Their threads still run service code; exit without waiting for them.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code

    def _join(self, deadline: float) -> list[ServiceRunner]:
        """Wait for every loop to end, until ``deadline`` or a second signal; the runners
        still in an iteration then."""
        while time.monotonic() < deadline and self.signals < 2:
            if not any(runner.thread.is_alive() for runner in self.runners):
                break
            time.sleep(TICK_S)
        return [runner for runner in self.runners if runner.thread.is_alive()]

    def _heartbeats(self) -> None:
        while True:
            for runner in self.runners:
                try:
                    runner.beat(stopping=self.stop.is_set())
                except Exception:  # a heartbeat never dies
                    logger.exception("service %s: heartbeat failed", runner.name)
            if self._heartbeat_stop.wait(self.conf.heartbeat_interval_s):
                return

    def _done(self, runner: ServiceRunner) -> None:
        """A loop ended; a failed service stops the others."""
        if runner.status.state is ServiceState.FAILED:
            self.failed.append(runner.name)
            self.stop.set()

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a counter: the main thread acts on it (no lock is taken in a handler).
        self.signals += 1

    def _forget_old_rows(self) -> None:
        try:
            with engine().begin() as conn:
                gone = store.forget(conn, self.conf.forget_after_days)
        except Exception as exc:  # the rows are written later, when the database is back
            logger.warning("services: cannot reach the database: %s", exc)
            return
        if gone:
            logger.info(
                "services: forgot %d row(s) not heard from in %d days",
                gone,
                self.conf.forget_after_days,
            )


def run(only: Sequence[str] = ()) -> int:
    """``python -m app services``: the registered services (those in ``only``, if given)."""
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s",
    )
    conf = settings.services
    builtins = [*BUILTIN_MODULES, *((MONITORS,) if settings.monitors.enabled else ())]
    modules = [*(builtins if conf.builtins else ()), *conf.modules]
    try:
        found = discover(modules)
    except Exception as exc:  # an import error, an InvalidService, a bug in a module
        logger.critical(
            "services: cannot load the service modules %s: %s", modules, exc, exc_info=True
        )
        return EXIT_FAILED
    unknown = sorted(set(only) - set(found))
    if unknown:
        logger.critical(
            "services: no service named %s; registered: %s",
            ", ".join(unknown),
            ", ".join(sorted(found)) or "none",
        )
        return EXIT_FAILED
    chosen = [found[name] for name in sorted(found) if not only or name in only]
    return Supervisor(chosen, conf).run()
