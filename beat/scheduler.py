"""Conveyor's beat scheduler, on django-celery-beat's tables.

Celery's beat keeps each entry's ``last_run_at`` in memory and asks Celery's
``crontab`` whether it is due; that is where its DST bugs (celery#10107,
django-celery-beat#134), its surprise runs after restarts and re-enables
(django-celery-beat#459, #537) and its double runs with two beats (celery#1495)
come from. This scheduler keeps the same tables but fires differently:

* **one leader**: beats share a lease row in PostgreSQL; only the holder fires, a
  dead holder is replaced once its lease expires (``beat.lease_ttl_s``);
* **one fire per slot**: each fire inserts a unique (schedule, fire time) row in
  the same transaction that records the job (an outbox row), so two beats, a
  handover or a split brain can never fire one slot twice, and a crash after the
  commit still publishes it;
* **a durable cursor per schedule**: the last fire time handled, in PostgreSQL;
  fires after it are due, and those late by more than ``beat.misfire_grace_s``
  follow the schedule's misfire policy;
* **fire times from** :mod:`beat.cron`, the same code as the preview;
* **reloads every** ``beat.reload_interval_s``, so an edit made by any path,
  SQL included, applies within seconds; a row that cannot be scheduled is
  disabled with its error, and the others keep firing;
* **never dies**: a database or broker outage is retried with backoff.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django_celery_beat.schedulers import DatabaseScheduler
from sqlalchemy import Connection, text

from app.db import engine
from app.errors import ConveyorError
from app.jobs.models import JobStatus
from app.jobs.releaser import Releaser
from app.jobs.store import JobStore
from beat import cron
from config.settings import get_settings

logger = logging.getLogger(__name__)

LEASE = "beat"
#: Fires of one schedule examined in one pass (a per-second schedule down for hours).
MAX_DUE = 20_000
PERIODS = {"days": "d", "hours": "h", "minutes": "m", "seconds": "s"}
ACTIVE = ("scheduled", "queued", "running", "retrying")

ACQUIRE = text("""
INSERT INTO conveyor_beat_lease AS l (name, holder, acquired_at, renewed_at, expires_at)
VALUES (:name, :me, now(), now(), now() + make_interval(secs => :ttl))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
    renewed_at = now(),
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING holder
""")
RELEASE = text("""
UPDATE conveyor_beat_lease SET expires_at = now() - interval '1 second'
WHERE name = :name AND holder = :me
""")
FENCE = text("""
SELECT 1 FROM conveyor_beat_lease
WHERE name = :name AND holder = :me AND expires_at > now() FOR SHARE
""")
INSTANCE = text("""
INSERT INTO conveyor_beat_instance (identity, started_at, last_tick_at, leader, last_error)
VALUES (:me, :started, now(), :leader, :error)
ON CONFLICT (identity) DO UPDATE SET last_tick_at = now(), leader = EXCLUDED.leader,
    last_error = EXCLUDED.last_error
""")
LOAD = text("""
SELECT t.id, t.name, t.task, t.args, t.kwargs, t.queue, t.priority, t.one_off, t.start_time,
       t.expires, t.date_changed, t.solar_id,
       c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, c.timezone AS crontab_tz,
       i.every, i.period, k.clocked_time,
       o.periodic_task_id IS NOT NULL AS has_options, o.second, o.misfire_policy,
       o.catch_up_limit, o.overlap_policy, o.cursor, o.seen_expression
FROM django_celery_beat_periodictask t
LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id
LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id
LEFT JOIN django_celery_beat_clockedschedule k ON k.id = t.clocked_id
LEFT JOIN conveyor_schedule o ON o.periodic_task_id = t.id
WHERE (t.enabled OR :include_disabled) AND (CAST(:only AS integer) IS NULL OR t.id = :only)
ORDER BY t.id
""")
OPTIONS = text("""
INSERT INTO conveyor_schedule (periodic_task_id, second, misfire_policy, catch_up_limit,
    overlap_policy, managed_by, synced_hash, edited_by, edited_at, cursor, seen_expression, error)
VALUES (:id, '0', 'fire_once', 10, 'skip', 'operator', '', '', NULL, :cursor, :seen, '')
ON CONFLICT (periodic_task_id) DO UPDATE
SET cursor = greatest(conveyor_schedule.cursor, EXCLUDED.cursor),
    seen_expression = EXCLUDED.seen_expression
""")
DISABLE = text("""
WITH t AS (UPDATE django_celery_beat_periodictask SET enabled = false WHERE id = :id)
INSERT INTO conveyor_schedule (periodic_task_id, second, misfire_policy, catch_up_limit,
    overlap_policy, managed_by, synced_hash, edited_by, edited_at, seen_expression, error)
VALUES (:id, '0', 'fire_once', 10, 'skip', 'operator', '', 'beat', now(), '', :error)
ON CONFLICT (periodic_task_id) DO UPDATE SET error = EXCLUDED.error, edited_by = 'beat',
    edited_at = now()
""")
BUMP = text("UPDATE django_celery_beat_periodictasks SET last_update = now() WHERE ident = 1")
FIRE = text("""
INSERT INTO conveyor_schedule_fire (periodic_task_id, schedule_name, fire_time, fired_at, outcome,
    job_id, beat, detail)
VALUES (:id, :name, :fire_time, now(), :outcome, :job_id, :beat, :detail)
ON CONFLICT (periodic_task_id, fire_time) DO NOTHING
RETURNING fire_time
""")
ADVANCE = text("""
UPDATE conveyor_schedule SET cursor = greatest(cursor, :cursor), error = ''
WHERE periodic_task_id = :id
""")
RAN = text("""
UPDATE django_celery_beat_periodictask
SET last_run_at = now(), total_run_count = total_run_count + :runs,
    enabled = enabled AND NOT :once
WHERE id = :id
""")
SKIPPED_EVENT = text("""
INSERT INTO job_events (job_id, from_status, to_status, at, detail)
SELECT id, status, status, now(), :detail FROM jobs WHERE id = :job_id
""")
PROMOTE = text("""
WITH ready AS (
    SELECT w.id FROM jobs w
    WHERE w.job_name LIKE 'schedule%' AND right(w.job_name, 5) = :suffix
      AND w.status = 'scheduled' AND w.release_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM jobs a WHERE a.job_name = left(w.job_name, -5)
          AND a.status IN ('scheduled', 'queued', 'running', 'retrying'))
    FOR UPDATE SKIP LOCKED
), promoted AS (
    UPDATE jobs SET job_name = left(job_name, -5), release_at = now(), due_at = now()
    FROM ready WHERE jobs.id = ready.id
    RETURNING jobs.id
)
INSERT INTO job_events (job_id, from_status, to_status, at, detail)
SELECT id, 'scheduled', 'scheduled', now(),
       'previous run finished; released (overlap policy queue_one)'
FROM promoted
RETURNING job_id
""")


@dataclass
class Plan:
    """One enabled schedule as beat fires it."""

    id: int
    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None
    expression: str
    tz: ZoneInfo
    cron: cron.Cron
    misfire: str
    catch_up_limit: int
    overlap: str
    one_off: bool
    start_time: datetime | None
    expires: datetime | None
    cursor: datetime
    #: The single instant of a clocked or ``@once`` schedule.
    at: datetime | None = None
    next_fire: datetime | None = field(default=None)
    #: Set when beat (re)started firing this plan: fires up to here came while beat
    #: was down or the schedule disabled, so they are misfires however recent.
    appeared_after: datetime | None = None

    def compute_next(self) -> None:
        """The first fire after the cursor (None: never again)."""
        self.next_fire = None
        if self.at is not None:
            self.next_fire = self.at if self.at > self.cursor else None
            return
        for instant in cron.fires(self.cron, self.tz, self.cursor):
            if self.start_time is not None and instant < self.start_time:
                continue
            self.next_fire = instant
            return

    def due(self, now: datetime) -> list[datetime]:
        """Fire times in (cursor, now], oldest first (the latest ``MAX_DUE`` at most)."""
        if self.at is not None:
            return [self.at] if self.cursor < self.at <= now else []
        start = self.cursor
        if self.start_time is not None and self.start_time > start:
            start = self.start_time - timedelta(microseconds=1)
        out: list[datetime] = []
        for instant in cron.fires(self.cron, self.tz, start):
            if instant > now:
                break
            out.append(instant)
            if len(out) >= MAX_DUE:
                # Down for ages on a fine-grained schedule: only recent fires matter.
                return [*out[:1], *self._recent(now)]
        return out

    def _recent(self, now: datetime) -> list[datetime]:
        out = []
        for instant in cron.fires(self.cron, self.tz, now - timedelta(hours=1)):
            if instant > now:
                break
            out.append(instant)
        return out


def expression_of(row: Any) -> tuple[str, str]:
    """The cron expression and time zone a schedule row stands for; ValueError if none."""
    if row["solar_id"] is not None:
        raise ValueError("solar schedules are not supported; use a cron expression")
    if row["minute"] is not None:
        second = (row["second"] or "0").strip()
        fields = [
            row["minute"],
            row["hour"],
            row["day_of_month"],
            row["month_of_year"],
            row["day_of_week"],
        ]
        fields = [str(f).strip() for f in fields]
        expression = " ".join(fields if second == "0" else [second, *fields])
        return expression, str(row["crontab_tz"] or get_settings().timezone)
    if row["every"] is not None:
        unit = PERIODS.get(row["period"])
        if unit is None:
            raise ValueError(
                f"interval period {row['period']!r} is not supported (use seconds or more)"
            )
        return f"@every {row['every']}{unit}", "UTC"
    if row["clocked_time"] is not None:
        return cron.ONCE, "UTC"
    raise ValueError("the schedule has no crontab, interval or clocked time")


_identity: tuple[int, str] | None = None


def identity() -> str:
    """This beat process's name in the lease: host, pid and a random tag (one per process)."""
    global _identity
    if _identity is None or _identity[0] != os.getpid():
        _identity = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    return _identity[1]


def build_plan(row: Any, cursor: datetime) -> Plan:
    """A plan from a ``LOAD`` row; raises naming what makes the row unusable."""
    from app.jobs.service import JobService

    expression, tz = expression_of(row)
    parsed = cron.validate(expression, tz)
    args = json.loads(row["args"] or "[]")
    kwargs = json.loads(row["kwargs"] or "{}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("args must be a JSON list and kwargs a JSON object")
    kwargs = JobService().validate(row["task"], kwargs)
    at = None
    if parsed.kind == "once":
        at = row["clocked_time"] or row["start_time"] or cursor + timedelta(microseconds=1)
    plan = Plan(
        id=row["id"],
        name=row["name"],
        task=row["task"],
        args=args,
        kwargs=kwargs,
        queue=row["queue"] or None,
        priority=row["priority"],
        expression=expression,
        tz=cron.zone(tz),
        cron=parsed,
        misfire=row["misfire_policy"] or "fire_once",
        catch_up_limit=max(1, int(row["catch_up_limit"] or 10)),
        overlap=row["overlap_policy"] or "skip",
        one_off=bool(row["one_off"]) or at is not None,
        start_time=row["start_time"],
        expires=row["expires"],
        cursor=cursor,
        at=at,
    )
    plan.compute_next()
    return plan


def load_row(conn: Connection, schedule_id: int) -> Any:
    """The ``LOAD`` row of one schedule, enabled or not (None if there is none)."""
    return conn.execute(LOAD, {"include_disabled": True, "only": schedule_id}).mappings().first()


class ConveyorScheduler(DatabaseScheduler):  # type: ignore[misc]
    """django-celery-beat's scheduler with a leader lease, fire records and cursors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self.conf = settings.beat
        self.identity = identity()
        self.started = datetime.now(UTC)
        self.leader = False
        self.plans: dict[int, Plan] = {}
        self.rows: dict[int, tuple[Any, ...]] = {}
        self.last_reload: datetime | None = None
        self.next_renew = 0.0
        self.next_reload = 0.0
        self.failures = 0
        self.last_error = ""
        self.synced = False
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
                conn.execute(RELEASE, {"name": LEASE, "me": self.identity})
                conn.execute(
                    text("DELETE FROM conveyor_beat_instance WHERE identity = :me"),
                    {"me": self.identity},
                )
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
                self._sync_defaults()
            if clock >= self.next_reload:
                self._reload()
                self._promote_waiting()
                self.next_reload = clock + self.conf.reload_interval_s
            wake = self._fire_due()
            if self.failures:
                logger.warning("beat: recovered after %d failed passes", self.failures)
            self.failures, self.last_error = 0, ""
        except Exception as exc:  # database or broker down: retry with backoff, never die
            self.failures += 1
            self.last_error = cron.describe_error(exc)
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
            holder = conn.execute(
                ACQUIRE, {"name": LEASE, "me": self.identity, "ttl": self.conf.lease_ttl_s}
            ).scalar()
            leader = holder == self.identity
            conn.execute(
                INSTANCE,
                {
                    "me": self.identity,
                    "started": self.started,
                    "leader": leader,
                    "error": self.last_error,
                },
            )
        if leader and not self.leader:
            logger.info("beat: %s is the leader", self.identity)
            self.next_reload, self.synced = 0.0, False
        elif self.leader and not leader:
            logger.warning("beat: %s lost the lease; waiting", self.identity)
        self.leader = leader

    def _sync_defaults(self) -> None:
        from beat.service import ScheduleService

        ScheduleService().sync_defaults()
        self.synced = True

    # schedules ---------------------------------------------------------------

    def _reload(self) -> None:
        """Rebuild plans from the tables; changed rows only are parsed again."""
        now = self.now()
        previous = self.last_reload or now
        with engine().begin() as conn:
            rows = conn.execute(LOAD, {"include_disabled": False, "only": None}).mappings().all()
        seen: set[int] = set()
        for row in rows:
            seen.add(row["id"])
            key = tuple(row.values())
            if self.rows.get(row["id"]) == key and row["id"] in self.plans:
                continue
            try:
                plan = self._plan(row, now, previous)
            except (ConveyorError, ValueError, TypeError) as exc:
                self._disable(row, cron.describe_error(exc))
                continue
            old = self.plans.get(row["id"])
            plan.appeared_after = previous if old is None else old.appeared_after
            self.rows[row["id"]] = key
            self.plans[row["id"]] = plan
        for gone in set(self.plans) - seen:
            del self.plans[gone]
            self.rows.pop(gone, None)
        self.last_reload = now

    def _plan(self, row: Any, now: datetime, previous: datetime) -> Plan:
        expression, tz = expression_of(row)
        seen = f"{expression}|{tz}"
        cursor = row["cursor"]
        if cursor is None or row["seen_expression"] != seen:
            build_plan(row, now)  # validate before touching anything
            # New to beat, or its expression was edited behind our back (by SQL):
            # the change happened after the previous reload, so fire from there on.
            changed = None if row["seen_expression"] else row["date_changed"]
            start = max(changed or previous, previous) if cursor is None else previous
            start = min(start, now)
            cursor = start if cursor is None else max(cursor, start)
            with engine().begin() as conn:
                conn.execute(OPTIONS, {"id": row["id"], "cursor": cursor, "seen": seen})
        return build_plan(row, cursor)

    def _disable(self, row: Any, reason: str) -> None:
        logger.error("beat: disabled schedule %r: %s", row["name"], reason)
        with engine().begin() as conn:
            conn.execute(DISABLE, {"id": row["id"], "error": reason})
            conn.execute(BUMP)
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

    def _fire_plan(self, plan: Plan, now: datetime) -> None:
        due = plan.due(now)
        if not due:
            plan.cursor = now
            plan.compute_next()
            return
        grace = timedelta(seconds=self.conf.misfire_grace_s)
        appeared = plan.appeared_after
        missed = [f for f in due if now - f > grace or (appeared is not None and f <= appeared)]
        on_time = [f for f in due if f not in missed]
        plan.appeared_after = None
        runs: list[tuple[datetime, str]] = []
        if missed:
            note = f"{len(missed)} fire(s) missed since {missed[0].isoformat()}"
            if plan.misfire == "catch_up":
                runs += [(f, f"catch-up: {note}") for f in missed[-plan.catch_up_limit :]]
            elif plan.misfire == "fire_once":
                runs.append((missed[-1], f"misfire, one run now: {note}"))
            else:
                runs.append((missed[-1], f"skipped by misfire policy: {note}"))
        runs += [(f, "") for f in on_time]
        if plan.expires is not None:
            runs = [(f, d) for f, d in runs if f <= plan.expires]
        created: list[uuid.UUID] = []
        with engine().begin() as conn:
            if conn.execute(FENCE, {"name": LEASE, "me": self.identity}).first() is None:
                self.leader = False
                logger.warning("beat: lease lost before firing %r; not firing", plan.name)
                return
            fired = 0
            for fire_time, detail in runs:
                if detail.startswith("skipped by misfire"):
                    self.firing.record(conn, plan, fire_time, "missed", None, detail)
                    continue
                job_id = self.firing.fire(conn, plan, fire_time, detail, created)
                fired += job_id is not None
            conn.execute(ADVANCE, {"id": plan.id, "cursor": due[-1]})
            if fired or plan.at is not None:
                conn.execute(RAN, {"id": plan.id, "runs": fired, "once": plan.one_off})
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
            promoted = [row[0] for row in conn.execute(PROMOTE, {"suffix": ":next"}).all()]
        if promoted:
            self._publish(promoted)


class Firing:
    """Writes fires: the unique fire record and the job, in the caller's transaction."""

    def __init__(self, celery_app: Any, identity: str) -> None:
        self.app = celery_app
        self.identity = identity
        self.store = JobStore()

    def fire(
        self,
        conn: Connection,
        plan: Plan,
        fire_time: datetime,
        detail: str,
        created: list[uuid.UUID],
        outcome: str = "enqueued",
    ) -> uuid.UUID | None:
        """One fire: its unique record and its job (or the record of why there is none)."""
        claimed = conn.execute(
            FIRE,
            {
                "id": plan.id,
                "name": plan.name,
                "fire_time": fire_time,
                "outcome": "pending",
                "job_id": None,
                "beat": self.identity,
                "detail": detail,
            },
        ).first()
        if claimed is None:
            return None  # fired already (by another beat, before a handover)
        job_id, new = self.job(conn, plan, fire_time, detail)
        if new:
            created.append(job_id)
        else:
            blocking = conn.execute(
                text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar()
            if plan.overlap == "queue_one":
                waiting, new = self.job(conn, plan, fire_time, detail, waiting=True)
                if new:
                    outcome, detail = "waiting", f"waits for run {job_id} ({blocking})"
                    job_id = waiting
                else:
                    outcome, detail = "skipped", f"run {job_id} is {blocking} and {waiting} waits"
            else:
                outcome, detail = (
                    "skipped",
                    f"run {job_id} is still {blocking} (overlap policy skip)",
                )
            conn.execute(
                SKIPPED_EVENT,
                {
                    "job_id": job_id,
                    "detail": f"fire {fire_time.isoformat()} of {plan.name!r}: {detail}",
                },
            )
        conn.execute(
            text(
                "UPDATE conveyor_schedule_fire SET outcome = :outcome, job_id = :job_id, "
                "detail = :detail WHERE periodic_task_id = :id AND fire_time = :fire_time"
            ),
            {
                "outcome": outcome,
                "job_id": job_id,
                "detail": detail,
                "id": plan.id,
                "fire_time": fire_time,
            },
        )
        return job_id if new else None

    def record(
        self,
        conn: Connection,
        plan: Plan,
        fire_time: datetime,
        outcome: str,
        job_id: Any,
        detail: str,
    ) -> None:
        conn.execute(
            FIRE,
            {
                "id": plan.id,
                "name": plan.name,
                "fire_time": fire_time,
                "outcome": outcome,
                "job_id": job_id,
                "beat": self.identity,
                "detail": detail,
            },
        )

    def job(
        self, conn: Connection, plan: Plan, fire_time: datetime, detail: str, waiting: bool = False
    ) -> tuple[uuid.UUID, bool]:
        queue = plan.queue or self.app.amqp.router.route({}, plan.task)["queue"].name
        name = None if plan.overlap == "allow" else f"schedule:{plan.name}"
        options: dict[str, Any] = {"queue": queue}
        if plan.priority is not None:
            options["priority"] = plan.priority
        return self.store.create(
            {
                "id": uuid.uuid4(),
                "handler": plan.task,
                "queue": queue,
                "payload": {"args": plan.args, "kwargs": plan.kwargs},
                "metadata": {
                    "schedule": plan.name,
                    "schedule_id": plan.id,
                    "fire_time": fire_time.isoformat(),
                    "beat": self.identity,
                    **({"note": detail} if detail else {}),
                },
                "job_name": f"{name}:next" if waiting and name else name,
                "schedule": plan.expression,
                "status": JobStatus.SCHEDULED if waiting else JobStatus.QUEUED,
                "due_at": fire_time,
                "release_at": None if waiting else datetime.now(UTC),
                "publish_options": options,
                "enqueued_at": None,
            },
            conn,
        )
