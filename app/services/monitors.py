"""Conveyor's monitors: built-in singleton services that alert while something is wrong.

Each monitor looks every ``monitors.interval_s`` seconds, raises an alert
(:mod:`app.services.alerts`: deduplicated by key, notified once per cooldown) for
each condition that holds, and resolves the alerts it raised earlier whose condition
has cleared. An alert carries ``labels["monitor"]``, the monitor's name, so that a
monitor resolves only its own.

* ``conveyor.queues``: ``queue.<queue>.failures`` while ``failures_threshold`` jobs of
  the queue failed or died in the last ``window_s``, and ``queue.<queue>.backlog``
  while its oldest published job has waited over ``backlog_age_s``;
* ``conveyor.memory``: ``worker.<name>.memory`` while a worker's largest process
  holds over ``worker_rss_mb``, as its last heartbeat says;
* ``conveyor.beat``: ``beat.leader`` once no beat has held the leader lease for
  ``beat_leader_grace_s``;
* ``conveyor.services``: ``service.<name>.<host>.<state>`` while a live service is
  degraded, or a failed one is not run by another host (a singleton) or by its own
  host again (an every-host service); it also resolves a failed singleton's own
  failure alert (:mod:`app.services.failure`) once another host runs it.

The settings are ``monitors.*``; ``monitors.enabled`` (and ``services.builtins``)
turn them off.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from app import lease
from app.db import engine
from app.jobs.models import JobStatus
from app.jobs.store import figures, workers
from app.services import alerts, failure, store
from app.services.base import Mode, Service
from app.services.states import ServiceState
from config.settings import MonitorSettings, get_settings

logger = logging.getLogger(__name__)

#: The beat's leader lease (``beat.lease``'s name; monitors never import beat).
BEAT_LEASE = "beat"
#: Statuses that count as a queue's failures.
FAILURES = [JobStatus.FAILED.value, JobStatus.DEAD.value]


class Monitor(Service):
    """A singleton that raises an alert per :class:`~app.services.alerts.Condition` its
    :meth:`check` finds, and resolves the ones it raised before that are no longer found."""

    mode = Mode.SINGLETON
    every = "60s"  #: replaced by ``monitors.interval_s`` (:meth:`interval_s`)
    #: Subclasses say what is wrong.
    what: ClassVar[str] = ""

    @classmethod
    def interval_s(cls) -> float:
        """``monitors.interval_s``, read when the runtime starts the monitor."""
        return get_settings().monitors.interval_s

    def check(self, conf: MonitorSettings) -> list[alerts.Condition]:
        """What is wrong now."""
        raise NotImplementedError

    def iterate(self) -> int:
        """Raise what is wrong, resolve what cleared; how many conditions hold."""
        found = self.check(get_settings().monitors)
        firing = alerts.reconcile(self.name, found, f"cleared: {self.what} no more")
        self.detail = {"firing": sorted(firing)}
        return len(found)


class QueueMonitor(Monitor):
    """Failed and dead jobs per queue over a threshold; a queue whose oldest job waits long."""

    name = "conveyor.queues"
    what = "failures or backlog"

    def check(self, conf: MonitorSettings) -> list[alerts.Condition]:
        now = datetime.now(UTC)
        with engine().connect() as conn:
            failed = figures.ended_by_queue(conn, FAILURES, now - timedelta(seconds=conf.window_s))
            oldest = figures.oldest_queued(conn)
        found = [
            alerts.Condition(
                f"queue.{queue}.failures",
                alerts.Severity.WARNING,
                f"{count} jobs of queue {queue} failed",
                f"{count} jobs of queue {queue} failed or died in the last "
                f"{conf.window_s:g} s (threshold {conf.failures_threshold}); "
                f"GET /api/v1/jobs?status=dead&queue={queue} lists the dead ones",
                {"queue": queue, "count": count},
            )
            for queue, count in sorted(failed.items())
            if count >= conf.failures_threshold
        ]
        for queue, since in sorted(oldest.items()):
            age = (now - since).total_seconds()
            if age > conf.backlog_age_s:
                found.append(
                    alerts.Condition(
                        f"queue.{queue}.backlog",
                        alerts.Severity.WARNING,
                        f"queue {queue} backed up",
                        f"its oldest job has waited {age:.0f} s (threshold "
                        f"{conf.backlog_age_s:g} s): too few workers consume it, or none",
                        {"queue": queue, "age_s": round(age)},
                    )
                )
        return found


class MemoryMonitor(Monitor):
    """A worker whose largest process holds more memory than ``monitors.worker_rss_mb``."""

    name = "conveyor.memory"
    what = "the worker's memory is over its limit"

    def check(self, conf: MonitorSettings) -> list[alerts.Condition]:
        fresh_s = 3 * get_settings().ledger.heartbeat_interval_s
        now = datetime.now(UTC)
        with engine().connect() as conn:
            beats = workers.heartbeats(conn)
        limit = conf.worker_rss_mb * 1024 * 1024
        return [
            alerts.Condition(
                f"worker.{beat['hostname']}.memory",
                alerts.Severity.WARNING,
                f"worker {beat['hostname']} holds {beat['rss_bytes'] / 2**20:.0f} MB",
                f"its largest process holds {beat['rss_bytes'] / 2**20:.0f} MB, over the "
                f"{conf.worker_rss_mb:g} MB of monitors.worker_rss_mb",
                {"worker": beat["hostname"], "rss_bytes": beat["rss_bytes"]},
            )
            for beat in beats
            if beat["rss_bytes"] is not None
            and beat["rss_bytes"] > limit
            and (now - beat["last_seen"]).total_seconds() <= fresh_s
        ]


class BeatMonitor(Monitor):
    """No beat holding the leader lease for longer than ``monitors.beat_leader_grace_s``."""

    name = "conveyor.beat"
    what = "no beat leader"
    #: Monotonic time since which no leader was seen (None: one was, at the last look).
    leaderless_since: float | None = None

    def check(self, conf: MonitorSettings) -> list[alerts.Condition]:
        with engine().connect() as conn:
            leader = lease.holders(conn, BEAT_LEASE).get(BEAT_LEASE)
        if leader is not None:
            self.leaderless_since = None
            return []
        if self.leaderless_since is None:
            self.leaderless_since = time.monotonic()
        gone_s = time.monotonic() - self.leaderless_since
        if gone_s < conf.beat_leader_grace_s:
            return []
        return [
            alerts.Condition(
                "beat.leader",
                alerts.Severity.CRITICAL,
                "no beat leads: recurring jobs do not fire",
                f"no beat has held the leader lease for {gone_s:.0f} s; start one "
                "(python -m app beat) or see why the beats cannot reach PostgreSQL",
            )
        ]


class ServicesMonitor(Monitor):
    """A live service that is degraded, or a failed one that no host runs."""

    name = "conveyor.services"
    what = "the service is degraded or failed"

    def check(self, conf: MonitorSettings) -> list[alerts.Condition]:
        fresh_s = 3 * get_settings().services.heartbeat_interval_s
        with engine().connect() as conn:
            rows = store.rows(conn, fresh_s)
        held = {row["name"] for row in rows if row["mode"] == Mode.SINGLETON and row["active"]}
        found = []
        for row in rows:
            state = row["state"]
            degraded = state == ServiceState.DEGRADED and row["alive"]
            # A failed singleton is fine once another host holds it; a failed every-host
            # service is its host's until that host's process runs it again.
            failed = state == ServiceState.FAILED and row["name"] not in held
            if state == ServiceState.FAILED and not failed:
                # failure.on_failed raised this key itself; it is this monitor's (labelled)
                # only if a look found it firing, so a handover between two looks left it
                # open for good (the failed host's next process stands by, never succeeds).
                alerts.resolve_alert(
                    failure.alert_key(row["name"], row["host"]),
                    f"cleared: {row['name']} runs on another host",
                )
            if not (degraded or failed):
                continue
            found.append(
                alerts.Condition(
                    f"service.{row['name']}.{row['host']}.{state}",
                    alerts.Severity.CRITICAL if failed else alerts.Severity.WARNING,
                    f"service {row['name']} is {state} on {row['host']}",
                    f"{row['consecutive_errors']} errors in a row; the last: {row['last_error']}",
                    {"service": row["name"], "host": row["host"]},
                )
            )
        return found
