"""Conveyor's beat scheduler, on django-celery-beat's tables.

Celery's beat keeps each entry's ``last_run_at`` in memory and asks Celery's
``crontab`` whether it is due; that is where its DST bugs (celery#10107,
django-celery-beat#134), its surprise runs after restarts and re-enables
(django-celery-beat#459, #537) and its double runs with two beats (celery#1495)
come from. This scheduler keeps the same tables but fires differently:

* **one leader**: beats share a lease row in PostgreSQL (:mod:`beat.lease`, on
  :mod:`app.lease`); only the holder fires, a dead holder is replaced once its lease
  expires;
* **one fire per slot**: each fire inserts a unique (schedule, fire time) row in
  the same transaction that records the job (an outbox row, :mod:`beat.firing`), so
  two beats, a handover or a split brain can never fire one slot twice, and a crash
  after the commit still publishes it;
* **a durable cursor per schedule**: the last fire time handled, in PostgreSQL;
  fires after it are due, and those late by more than ``beat.misfire_grace_s``
  follow the schedule's misfire policy (:mod:`beat.plan`, pure functions);
* **fire times from** :mod:`app.schedule`, the same code as the preview;
* **reloads every** ``beat.reload_interval_s``, so an edit made by any path,
  SQL included, applies within seconds; a row that cannot be scheduled is
  disabled with its error, and the others keep firing;
* **never dies**: a database or broker outage is retried with backoff.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django_celery_beat.schedulers import DatabaseScheduler

from app.db import engine
from app.errors import ConveyorError
from app.jobs.releaser import Releaser
from app.jobs.store.release import promote_waiting
from app.lease import identity
from app.schedule import describe_error
from beat import tables
from beat.firing import Firing
from beat.lease import LeaderLease
from beat.plan import Plan, select_runs
from beat.service import ScheduleService
from config.settings import get_settings

logger = logging.getLogger(__name__)


class ConveyorScheduler(DatabaseScheduler):  # type: ignore[misc]
    """django-celery-beat's scheduler with a leader lease, fire records and cursors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self.conf = settings.beat
        self.identity = identity()
        self.started = datetime.now(UTC)
        self.lease = LeaderLease(self.identity, self.conf.lease_ttl_s, self.started)
        self.leader = False
        self.plans: dict[int, Plan] = {}
        self.rows: dict[int, tuple[Any, ...]] = {}
        self.last_reload: datetime | None = None
        self.next_renew = 0.0
        self.next_reload = 0.0
        self.failures = 0
        self.last_error = ""
        self.synced = False
        #: Whether this leadership fired the run-on-startup schedules yet.
        self.started_up = False
        super().__init__(*args, **kwargs)
        self.releaser = Releaser(self.app)
        self.firing = Firing(self.app, self.identity)
        self.max_interval = min(self.conf.renew_interval_s, self.conf.reload_interval_s)

    # django-celery-beat hooks ------------------------------------------------

    def setup_schedule(self) -> None:
        """Nothing at start: the leader syncs the declared defaults when it takes over.

        (``DatabaseScheduler`` would write ``beat_schedule`` over the tables here,
        clobbering operators' edits on every start.)"""

    def sync(self) -> None:
        """Cursors are written with each fire; nothing is kept in memory to sync."""

    def close(self) -> None:
        """Give the lease up, so another beat takes over at once."""
        try:
            with engine().begin() as conn:
                self.lease.release(conn)
        except Exception as exc:  # shutting down with the database gone: the lease expires
            logger.warning("beat: could not release the lease: %s", exc)
        self.leader = False

    @property
    def info(self) -> str:
        return f"    . leader lease -> {self.conf.lease_ttl_s}s, identity {self.identity}"

    # the loop ----------------------------------------------------------------

    def now(self) -> datetime:
        """The scheduler's clock (shifted by ``beat.clock_offset_s`` in drills)."""
        return datetime.now(UTC) + timedelta(seconds=self.conf.clock_offset_s)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One pass: hold the lease, reload edits, fire what is due; seconds to sleep."""
        try:
            clock = time.monotonic()
            if clock >= self.next_renew:
                self._renew()
                self.next_renew = clock + self.conf.renew_interval_s
            if not self.leader:
                return self.conf.renew_interval_s
            if not self.synced:
                ScheduleService().sync_defaults()
                self.synced = True
            if clock >= self.next_reload:
                self._reload()
                self._promote_waiting()
                self.next_reload = clock + self.conf.reload_interval_s
            if not self.started_up:
                self._fire_on_startup()
                self.started_up = True
            wake = self._fire_due()
            if self.failures:
                logger.warning("beat: recovered after %d failed passes", self.failures)
            self.failures, self.last_error = 0, ""
        except Exception as exc:  # database or broker down: retry with backoff, never die
            self.failures += 1
            self.last_error = describe_error(exc)
            self.next_renew = 0.0
            if self.failures in (1, 5) or self.failures % 50 == 0:
                logger.error("beat: pass failed (%d in a row): %s", self.failures, self.last_error)
            return float(min(10.0, 0.5 * 2 ** min(self.failures, 5)))
        sleep = min(self.next_renew, self.next_reload) - time.monotonic()
        if wake is not None:
            sleep = min(sleep, (wake - self.now()).total_seconds())
        return max(0.005, sleep)

    def _renew(self) -> None:
        with engine().begin() as conn:
            leader = self.lease.renew(conn, self.last_error)
        if leader and not self.leader:
            logger.info("beat: %s is the leader", self.identity)
            self.next_reload, self.synced, self.started_up = 0.0, False, False
        elif self.leader and not leader:
            logger.warning("beat: %s lost the lease; waiting", self.identity)
        self.leader = leader

    # schedules ---------------------------------------------------------------

    def _reload(self) -> None:
        """Rebuild plans from the tables; changed rows only are parsed again."""
        now = self.now()
        previous = self.last_reload or now
        with engine().begin() as conn:
            rows = tables.load_rows(conn)
        seen: set[int] = set()
        for row in rows:
            seen.add(row["id"])
            key = tuple(row.values())
            if self.rows.get(row["id"]) == key and row["id"] in self.plans:
                continue
            try:
                plan = self._plan(row, now, previous)
            except (ConveyorError, ValueError, TypeError) as exc:
                self._disable(row, describe_error(exc))
                continue
            old = self.plans.get(row["id"])
            if old is not None:
                plan.appeared_after = old.appeared_after
            elif self.last_reload is not None:  # created or enabled while beat runs
                plan.appeared_after = previous
            # At start every schedule's cursor says what was fired: a slot missed while
            # beat was down is late, and the grace decides (not "appeared at start").
            self.rows[row["id"]] = key
            self.plans[row["id"]] = plan
        for gone in set(self.plans) - seen:
            del self.plans[gone]
            self.rows.pop(gone, None)
        self.last_reload = now

    def _plan(self, row: Any, now: datetime, previous: datetime) -> Plan:
        expression, tz = tables.expression_of(row)
        seen = tables.seen_key(expression, tz)
        cursor = row["cursor"]
        if cursor is None or row["seen_expression"] != seen:
            tables.build_plan(row, now)  # validate before touching anything
            # New to beat, or its expression was edited behind our back (by SQL):
            # the change happened after the previous reload, so fire from there on.
            changed = None if row["seen_expression"] else row["date_changed"]
            start = max(changed or previous, previous) if cursor is None else previous
            start = min(start, now)
            cursor = start if cursor is None else max(cursor, start)
            with engine().begin() as conn:
                conn.execute(tables.MOVE_CURSOR, {"id": row["id"], "cursor": cursor, "seen": seen})
        return tables.build_plan(row, cursor)

    def _disable(self, row: Any, reason: str) -> None:
        logger.error("beat: disabled schedule %r: %s", row["name"], reason)
        with engine().begin() as conn:
            conn.execute(tables.DISABLE, {"id": row["id"], "error": reason})
            conn.execute(tables.BUMP)
        self.plans.pop(row["id"], None)
        self.rows.pop(row["id"], None)

    # firing ------------------------------------------------------------------

    def _fire_due(self) -> datetime | None:
        """Fire every plan that is due; return when the next one is."""
        now = self.now()
        for plan in list(self.plans.values()):
            if plan.next_fire is not None and plan.next_fire <= now:
                self._fire_plan(plan, now)
        upcoming = [p.next_fire for p in self.plans.values() if p.next_fire is not None]
        return min(upcoming) if upcoming else None

    def _fire_on_startup(self) -> None:
        """Fire each run-on-startup schedule once for the cluster's start: its fire time
        is the lease's epoch, so a new leader within the same epoch (a handover) finds
        the fire recorded and fires nothing."""
        plans = [plan for plan in self.plans.values() if plan.run_on_startup]
        if not plans:
            return
        created: list[uuid.UUID] = []
        with engine().begin() as conn:
            epoch = self.lease.epoch(conn)
            if epoch is None or not self.lease.holds(conn):
                return
            for plan in plans:
                if self.firing.fire(conn, plan, epoch, "run on startup", created):
                    logger.info("beat: fired %r for the cluster's start", plan.name)
        if created:
            self._publish(created)

    def _fire_plan(self, plan: Plan, now: datetime) -> None:
        due = plan.due(now)
        if not due:
            plan.cursor = now
            plan.compute_next()
            return
        runs = select_runs(
            due,
            now,
            grace=timedelta(seconds=self.conf.misfire_grace_s),
            misfire=plan.misfire,
            catch_up_limit=plan.catch_up_limit,
            appeared_after=plan.appeared_after,
            expires=plan.expires,
        )
        plan.appeared_after = None
        created: list[uuid.UUID] = []
        with engine().begin() as conn:
            if not self.lease.holds(conn):
                self.leader = False
                logger.warning("beat: lease lost before firing %r; not firing", plan.name)
                return
            fired = 0
            for run in runs:
                if run.missed:
                    self.firing.record(conn, plan, run.fire_time, "missed", None, run.detail)
                    continue
                job_id = self.firing.fire(conn, plan, run.fire_time, run.detail, created)
                fired += job_id is not None
            conn.execute(tables.ADVANCE, {"id": plan.id, "cursor": due[-1]})
            if fired or plan.at is not None:
                conn.execute(tables.RAN, {"id": plan.id, "runs": fired, "once": plan.one_off})
        plan.cursor = due[-1]
        plan.compute_next()
        if plan.one_off:
            self.plans.pop(plan.id, None)
        if created:
            self._publish(created)

    def _publish(self, ids: list[uuid.UUID]) -> None:
        """Publish committed fires now; if the broker is down the releaser does it later."""
        try:
            self.releaser.release_due(ids)
        except Exception as exc:
            logger.warning(
                "beat: publishing %d fire(s) deferred to the releaser: %s", len(ids), exc
            )

    def _promote_waiting(self) -> None:
        with engine().begin() as conn:
            promoted = promote_waiting(conn)
        if promoted:
            self._publish(promoted)
