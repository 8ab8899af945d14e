"""One service on one host: its thread and loop, its row and, for a singleton, its lease.

The loop, in the service's own thread: a singleton first checks in PostgreSQL that
it still holds its lease (the fence; without it, it waits in ``standby``); then one
iteration runs; then the loop waits (the interval's rest, the poll policy's delay, or
the error backoff) until the next, or until the process stops. An iteration is never
interrupted: a stop takes effect between iterations, and a long iteration sees
:attr:`~app.services.base.Service.stopping` to end early.

The process's heartbeat thread calls :meth:`ServiceRunner.beat`: it renews (or, on
a standby host, tries to take) the singleton's lease, and writes the row. A state
change is written at once by whichever thread makes it; one lock per service orders
the writes, the lease and the final row, so that a lease given up is never renewed.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.db import engine
from app.lease import Lease
from app.services import failure, store
from app.services.backoff import PollDelays, error_delay, poll_delays
from app.services.base import Kind, Mode, PollService, Service
from app.services.states import (
    ServiceState,
    Status,
    errored,
    failed,
    leased,
    stopped,
    succeeded,
)
from config.settings import ServicesSettings

logger = logging.getLogger(__name__)

#: Longest error text kept on a row.
MAX_ERROR_LENGTH = 2000


def describe(exc: BaseException) -> str:
    """A one-line account of an error, as a row keeps it (PostgreSQL's text holds no NUL)."""
    return f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")[:MAX_ERROR_LENGTH]


class ServiceRunner:
    """Runs one registered service in its own thread, and keeps its row and lease."""

    def __init__(
        self,
        cls: type[Service],
        conf: ServicesSettings,
        host: str,
        me: str,
        stop: threading.Event,
        on_done: Callable[[ServiceRunner], None],
    ) -> None:
        self.cls = cls
        self.name = cls.name
        self.mode = Mode(cls.mode)
        self.conf = conf
        self.host = host
        self.me = me
        self.started_at = datetime.now(UTC)
        self.lease = (
            Lease(store.lease_name(self.name), me, conf.lease_ttl_s)
            if self.mode is Mode.SINGLETON
            else None
        )
        self.status = Status(
            state=ServiceState.STANDBY if self.lease is not None else ServiceState.RUNNING
        )
        #: A singleton's lease is ours, as the last renewal or fence found.
        self.held = False
        #: The row and lease are final: nothing writes them any more.
        self.finished = False
        self.iteration_started_at: datetime | None = None
        self.stop_reason: str | None = None
        self.service: Service | None = None
        #: An iteration succeeded since this process started it (reported once).
        self.succeeded_once = False
        self.thread = threading.Thread(target=self._run, name=f"service:{self.name}", daemon=True)
        self._stop = stop
        self._on_done = on_done
        self._wake = threading.Event()
        self._lock = threading.RLock()
        self._claimed = False  # a write went through (the first one takes the row over)
        self._owned = True  # the last write went through: no other process writes the row
        self._db_ok = True
        idle_s = cls.idle_s(conf.poll_idle_s) if issubclass(cls, PollService) else None
        self._polls: PollDelays | None = (
            None if idle_s is None else poll_delays(conf.poll_fast_s, idle_s)
        )
        self._detail: dict[str, Any] = (
            {"kind": Kind.INTERVAL.value, "every_s": cls.interval_s()}
            if idle_s is None
            else {"kind": Kind.POLL.value, "fast_s": conf.poll_fast_s, "idle_s": idle_s}
        )

    # what the supervisor calls ----------------------------------------------------

    def start(self) -> None:
        """Write the row (taking it over from an earlier process of this host), then run."""
        with self._lock:
            self._write()
        self.thread.start()

    def wake(self) -> None:
        """End the current wait (the process is stopping, or the lease was gained)."""
        self._wake.set()

    def beat(self, stopping: bool) -> None:
        """A heartbeat: renew or try to take the lease (a singleton), write the row.

        While the process stops, a singleton renews a lease it holds (its last
        iteration may still run) but takes none."""
        with self._lock:
            if self.finished:
                return
            if self.lease is not None and (self.held or not stopping):
                self._renew(self.lease)
            self._write()

    def abandon(self, why: str) -> None:
        """Give up on an iteration still running (``why``: the grace period ended, a second
        signal came): the row says stopped; a singleton's lease is left to expire (the
        iteration still runs until the process exits)."""
        with self._lock:
            if self.finished:
                return
            self.stop_reason = f"abandoned: {why}"
            self.status = stopped(self.status)
            self._write()
            self.finished = True
        logger.error("service %s: %s", self.name, self.stop_reason)

    def should_stop(self) -> bool:
        """What :attr:`Service.stopping` answers."""
        return self._stop.is_set() or (self.lease is not None and not self.held)

    # the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.service = self.cls()
            self.service._stop_check = self.should_stop
            while not self._stop.is_set():
                if self.lease is not None and not self._fenced(self.lease):
                    self._change(lambda status: leased(status, False))
                    self._wait(self.conf.heartbeat_interval_s, until_woken=True)
                    continue
                if self.lease is not None:
                    self._change(lambda status: leased(status, True))
                delay = self._iterate(self.service)
                if self.status.state is ServiceState.FAILED:
                    break
                self._wait(delay)
        except BaseException as exc:  # the runtime itself broke: the service cannot go on
            logger.exception("service %s: its thread died", self.name)
            error = describe(exc)
            self._change(lambda status: failed(status, error, datetime.now(UTC)))
        finally:
            self._finish()

    def _iterate(self, service: Service) -> float:
        """One iteration, its outcome recorded; the seconds to wait before the next."""
        started = time.monotonic()
        self.iteration_started_at = datetime.now(UTC)
        try:
            items = int(service.iterate() or 0)
        except Exception as exc:
            error, at = describe(exc), datetime.now(UTC)
            self.iteration_started_at = None
            self._change(lambda s: errored(s, error, at, self.conf.max_consecutive_errors))
            errors = self.status.consecutive_errors
            logger.error(
                "service %s: iteration failed (%d in a row)", self.name, errors, exc_info=True
            )
            if self.status.state is ServiceState.FAILED:
                return 0.0
            return error_delay(
                errors, self.conf.error_backoff_s, self.conf.error_backoff_max_s, random.random()
            )
        self.iteration_started_at = None
        self._change(lambda s: succeeded(s, items, datetime.now(UTC)))
        if not self.succeeded_once:
            self.succeeded_once = True
            failure.on_recovered(self.name, self.host)
        if self.lease is not None and not self.held:
            self._change(lambda status: leased(status, False))
        if self._polls is not None:
            return self._polls.next_delay(items > 0)
        return max(0.0, self.cls.interval_s() - (time.monotonic() - started))

    def _wait(self, seconds: float, until_woken: bool = False) -> None:
        """Sleep ``seconds``, or less if the process stops (or, ``until_woken``, on a wake)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._wake.wait(remaining):
                self._wake.clear()
                if until_woken:
                    return

    def _fenced(self, lease: Lease) -> bool:
        """True if the lease is ours now, as PostgreSQL says (before each iteration)."""
        if not self.held:
            return False
        try:
            with engine().begin() as conn:
                held = lease.holds(conn)
        except Exception as exc:  # the database is unreachable: act as if the lease were lost
            logger.warning("service %s: cannot check its lease: %s", self.name, exc)
            held = False
        if not held:
            with self._lock:
                self.held = False
        return held

    def _finish(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.status = stopped(self.status)
            has_failed = self.status.state is ServiceState.FAILED
            self.stop_reason = self.stop_reason or ("failed" if has_failed else "stopped")
            if self.lease is not None:
                try:
                    with engine().begin() as conn:
                        self.lease.release(conn)
                except Exception as exc:  # it expires by itself
                    logger.warning("service %s: could not give its lease up: %s", self.name, exc)
                self.held = False
            self._write()
            self.finished = True
        if has_failed:
            failure.on_failed(failure.FailedService(self.name, self.host, self.mode, self.status))
        else:
            logger.info("service %s stopped", self.name)
        self._on_done(self)

    # state, row and lease (under the lock) --------------------------------------------

    def _change(self, transition: Callable[[Status], Status]) -> None:
        """Apply ``transition``; a new state is written at once, counters with the heartbeat."""
        with self._lock:
            before = self.status.state
            self.status = transition(self.status)
            if self.status.state is not before and not self.finished:
                logger.info("service %s: %s → %s", self.name, before, self.status.state)
                self._write()

    def _renew(self, lease: Lease) -> None:
        try:
            with engine().begin() as conn:
                held = lease.acquire(conn)
        except Exception as exc:  # unreachable: it will lapse, so act as if it had
            if self.held:
                logger.warning("service %s: cannot renew its lease: %s", self.name, exc)
            held = False
        if held and not self.held:
            logger.info("service %s: %s holds its lease", self.name, self.me)
            self.held = True
            self.wake()
        elif self.held and not held:
            logger.warning("service %s: %s lost its lease; standing by", self.name, self.me)
            self.held = False
            self.status = leased(self.status, False)

    def _row(self) -> dict[str, Any]:
        status = self.status
        detail = dict(self._detail)
        if self.iteration_started_at is not None:
            detail["iteration_started_at"] = self.iteration_started_at.isoformat()
        if self.stop_reason:
            detail["stop"] = self.stop_reason
        if self.service is not None and self.service.detail:
            detail["service"] = dict(self.service.detail)
        return {
            "name": self.name,
            "host": self.host,
            "mode": self.mode.value,
            "state": status.state.value,
            "pid": os.getpid(),
            "identity": self.me,
            "started_at": self.started_at,
            "last_success_at": status.last_success_at,
            "last_error": status.last_error,
            "last_error_at": status.last_error_at,
            "consecutive_errors": status.consecutive_errors,
            "items_processed": status.items_processed,
            "detail": detail,
        }

    def _write(self) -> None:
        """Write the row; a database that cannot be reached is logged once per outage."""
        try:
            with engine().begin() as conn:
                ours = store.save(conn, self._row(), takeover=not self._claimed)
        except Exception as exc:
            if self._db_ok:
                logger.warning("service %s: cannot write its row: %s", self.name, exc)
            self._db_ok = False
            return
        if not self._db_ok:
            logger.info("service %s: writing its row again", self.name)
        self._db_ok = True
        if self._owned and not ours:
            logger.error(
                "service %s: its row on host %s is written by another process; give each "
                "services process its own CONVEYOR_SERVICES__HOST",
                self.name,
                self.host,
            )
        self._claimed, self._owned = True, ours
