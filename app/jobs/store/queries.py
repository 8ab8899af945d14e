"""Every statement on the ledger's tables (``jobs``, ``job_events``, ``workers``), named.

One place for the SQL, as procrastinate keeps its ``queries.sql``: each statement is
a constant with a line saying what it does, in psycopg's ``%(name)s`` style, so the
same text runs on a psycopg connection (the claim, the recorder) or through
SQLAlchemy's ``exec_driver_sql`` (everything else). Job states are parameters fed
from :class:`~app.jobs.models.JobStatus`; only the recorder's upsert, which runs once
per row of every batch, has them written in from the enum when this module loads
(as array parameters on every row they made a batch of 500 rows 5-25% slower, measured
on psycopg's ``executemany``), and the notifier's read, which must repeat its partial
index's condition. JobStore's dynamic reads (filters, pages) are SQLAlchemy
Core in :mod:`app.jobs.store.jobs`; migrations aside, no other module writes SQL on
these tables.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.jobs.models import FINISHED, NOTICE_DUE, UNFINISHED, JobStatus


def states(chosen: Iterable[JobStatus]) -> list[str]:
    """``chosen`` as a parameter for ``status = ANY(…)``, in the states' life order."""
    wanted = set(chosen)
    return [status.value for status in JobStatus if status in wanted]


def _written_in(chosen: Iterable[JobStatus]) -> str:
    """``chosen`` as SQL literals, for the one statement that cannot take them as parameters."""
    return ", ".join(f"'{value}'" for value in states(chosen))


#: Finished states, as a parameter.
FINISHED_STATES = states(FINISHED)
#: Unfinished states, as a parameter (and in their life order for the zeros of counts).
UNFINISHED_STATES = states(UNFINISHED)

# -- recorder: the batched upsert of transitions (app.jobs.recorder) -----------------

#: Columns a transition may carry about its job, besides the state change itself.
JOB_FIELDS = (
    "handler",
    "job_name",
    "queue",
    "payload",
    "metadata",
    "schedule",
    "idempotency_key",
    "attempts",
    "deliveries",
    "last_error",
    "traceback",
    "worker",
    "result",
    "enqueued_at",
    "due_at",
    "started_at",
    "finished_at",
)
#: Columns of ``jobs`` the upsert writes: the row's id and state, what transitions carry,
#: and ``created_at`` (its first transition's time); all of them the model's columns.
UPSERT_COLUMNS = ("id", "status", "status_at", "created_at", *JOB_FIELDS)

#: -- upsert_jobs -- (head): insert or merge one row per job; rows follow.
UPSERT_HEAD = f"INSERT INTO jobs AS j ({', '.join(UPSERT_COLUMNS)}) VALUES "
#: -- upsert_jobs -- (row): one job's values; a job is created when it is first recorded.
UPSERT_ROW = (
    "(" + ", ".join(f"%({'status_at' if c == 'created_at' else c})s" for c in UPSERT_COLUMNS) + ")"
)
#: -- upsert_jobs -- (tail): how a transition merges into the job's row, whatever the order.
UPSERT_TAIL = f"""
ON CONFLICT (id) DO UPDATE SET
    job_name = coalesce(j.job_name, EXCLUDED.job_name),
    payload = CASE WHEN j.payload = '{{}}'::jsonb THEN EXCLUDED.payload ELSE j.payload END,
    metadata = CASE WHEN EXCLUDED.metadata = '{{}}'::jsonb THEN j.metadata
                    ELSE EXCLUDED.metadata END,
    schedule = coalesce(j.schedule, EXCLUDED.schedule),
    status = CASE
        -- A finished job is not reopened by a publish of its id (a duplicate); only
        -- JobService.requeue, which writes directly, does that.
        WHEN j.status IN ({_written_in(FINISHED)})
             AND EXCLUDED.status IN ({_written_in({JobStatus.QUEUED, JobStatus.SCHEDULED})})
             THEN j.status
        -- Nor by news of an earlier attempt (a retry recorded late, another host's clock),
        -- nor by a duplicate delivery of the attempt that finished it (found it running).
        WHEN j.status IN ({_written_in(FINISHED)}) AND EXCLUDED.attempts < j.attempts
             THEN j.status
        WHEN j.status IN ({_written_in(FINISHED)})
             AND EXCLUDED.status NOT IN ({_written_in(FINISHED)})
             AND EXCLUDED.attempts <= j.attempts
             THEN j.status
        WHEN EXCLUDED.status_at >= j.status_at THEN EXCLUDED.status
        ELSE j.status END,
    status_at = greatest(j.status_at, EXCLUDED.status_at),
    attempts = greatest(j.attempts, EXCLUDED.attempts),
    deliveries = greatest(j.deliveries, EXCLUDED.deliveries),
    last_error = coalesce(EXCLUDED.last_error, j.last_error),
    traceback = coalesce(EXCLUDED.traceback, j.traceback),
    worker = coalesce(EXCLUDED.worker, j.worker),
    result = coalesce(EXCLUDED.result, j.result),
    created_at = least(j.created_at, EXCLUDED.created_at),
    enqueued_at = coalesce(j.enqueued_at, EXCLUDED.enqueued_at),
    due_at = coalesce(EXCLUDED.due_at, j.due_at),
    started_at = greatest(j.started_at, EXCLUDED.started_at),
    -- Only a requeue (JobService, written directly) clears it: a later record without
    -- one (a duplicate delivery of a finished job) keeps the time the job finished.
    finished_at = CASE WHEN EXCLUDED.status_at >= j.status_at
                       THEN coalesce(EXCLUDED.finished_at, j.finished_at)
                       ELSE j.finished_at END
"""
#: -- upsert_job --: one row per execution (``executemany``).
UPSERT = UPSERT_HEAD + UPSERT_ROW + UPSERT_TAIL

#: Columns of one event, in the order the recorder's rows give them.
EVENT_COLUMNS = "job_id, from_status, to_status, at, attempt, worker, detail"
#: -- copy_events --: a batch's events, streamed.
COPY_EVENTS = f"COPY job_events ({EVENT_COLUMNS}) FROM STDIN"
#: -- insert_events -- (head): a batch's events in one statement; rows follow.
INSERT_EVENTS_HEAD = f"INSERT INTO job_events ({EVENT_COLUMNS}) VALUES "
#: -- insert_events -- (row): one event (positional, in :data:`EVENT_COLUMNS` order).
EVENT_ROW = "(%s, %s, %s, %s, %s, %s, %s)"
#: -- insert_event_if_new --: an event, unless its job has one like it (an outcome written twice).
EVENT_IF_NEW = """
INSERT INTO job_events (job_id, from_status, to_status, at, attempt, worker, detail)
SELECT %(id)s::uuid, %(from)s::text, %(to)s::text, %(at)s::timestamptz, %(attempt)s::int,
       %(worker)s::text, %(detail)s::text
WHERE NOT EXISTS (
    SELECT 1 FROM job_events
    WHERE job_id = %(id)s::uuid AND to_status = %(to)s::text AND attempt = %(attempt)s::int
)
"""

# -- claim: a delivery counted and locked when the gate is away (app.jobs.claim) ------

#: -- job_count --: a job's state and how many deliveries it had.
JOB_COUNT = "SELECT status, deliveries FROM jobs WHERE id = %(id)s"
#: -- claim_job --: count a delivery (creating the job if unknown) and try its lock.
CLAIM = """
WITH prev AS (
    SELECT status FROM jobs WHERE id = %(id)s
), counted AS (
    INSERT INTO jobs AS j (id, handler, queue, payload, status, status_at, deliveries,
                           attempts, created_at)
    VALUES (%(id)s, %(handler)s, %(queue)s, %(payload)s, %(queued)s, '-infinity', 1, 0, now())
    ON CONFLICT (id) DO UPDATE SET deliveries = j.deliveries + 1
    RETURNING deliveries
)
SELECT (SELECT status FROM prev), (SELECT deliveries FROM counted),
       pg_try_advisory_lock(hashtextextended(%(id)s::text, 0))
"""
#: -- unlock_job --: let go of a job's advisory lock (no table: it belongs with CLAIM).
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%(id)s::text, 0))"

# -- workers: heartbeats and recovery (app.jobs.heartbeat, app.jobs.claim) -----------

#: -- beat --: a worker says it is alive.
BEAT = """
INSERT INTO workers (hostname, pid, queues, started_at, last_seen, rss_bytes)
VALUES (%(hostname)s, %(pid)s, %(queues)s, now(), now(), %(rss_bytes)s)
ON CONFLICT (hostname) DO UPDATE SET pid = EXCLUDED.pid, queues = EXCLUDED.queues,
    last_seen = now(), rss_bytes = EXCLUDED.rss_bytes
"""
#: -- alive_workers --: workers heard from within ``after`` seconds.
ALIVE_WORKERS = """
SELECT hostname FROM workers WHERE last_seen >= now() - make_interval(secs => %(after)s)
"""
#: -- silent --: true when the worker was not heard from within ``after`` seconds (or never).
SILENT = """
SELECT coalesce(bool_and(last_seen < now() - make_interval(secs => %(after)s)), true)
FROM workers WHERE hostname = %(hostname)s
"""
#: -- heartbeats --: every worker's last heartbeat.
HEARTBEATS = """
SELECT hostname, pid, queues, started_at, last_seen, rss_bytes FROM workers ORDER BY hostname
"""
#: -- recover_lost --: hand jobs running on silent workers back to the releaser, with events.
RECOVER = """
WITH lost AS (
    SELECT j.id, j.worker FROM jobs j
    LEFT JOIN workers w ON w.hostname = j.worker
    WHERE j.status = %(running)s
      AND j.status_at < now() - make_interval(secs => %(after)s)
      AND (w.hostname IS NULL OR w.last_seen < now() - make_interval(secs => %(after)s))
    FOR UPDATE OF j SKIP LOCKED
), requeued AS (
    UPDATE jobs SET status = %(queued)s, status_at = now(), release_at = now(),
        publish_options = coalesce(publish_options, '{}'::jsonb)
            || jsonb_build_object('queue', jobs.queue)
    FROM lost WHERE jobs.id = lost.id
    RETURNING jobs.id, lost.worker
)
INSERT INTO job_events (job_id, from_status, to_status, at, detail)
SELECT id, %(running)s::text, %(queued)s::text, now(),
       'recovered: worker ' || coalesce(worker, '?') || ' stopped heartbeating'
FROM requeued
RETURNING job_id
"""

# -- release: held jobs, published when due (app.jobs.releaser, beat) ----------------

#: -- hold_job --: a message due later, kept in its job's row; ``created`` if the job is new.
HOLD = """
INSERT INTO jobs AS j (id, handler, queue, payload, status, status_at, created_at, due_at,
                       release_at, publish_options)
VALUES (%(id)s, %(handler)s, %(queue)s, %(payload)s::jsonb, %(status)s, now(), now(), %(due)s,
        %(due)s, %(options)s::jsonb)
ON CONFLICT (id) DO UPDATE SET release_at = EXCLUDED.release_at, due_at = EXCLUDED.due_at,
    publish_options = EXCLUDED.publish_options
RETURNING (xmax = 0) AS created
"""
#: -- insert_event --: one state change, now.
INSERT_EVENT = """
INSERT INTO job_events (job_id, from_status, to_status, at, detail)
VALUES (%(id)s, %(from_status)s, %(to_status)s, now(), %(detail)s)
"""
#: -- due_jobs --: held jobs due now (only ``ids`` unless NULL), locked for this releaser.
DUE = """
SELECT id, handler, queue, payload, publish_options, status FROM jobs
WHERE release_at <= now() AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
ORDER BY release_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
#: -- released --: a held job was published; a scheduled one is queued now.
RELEASED = """
UPDATE jobs SET release_at = NULL,
    status = CASE WHEN status = %(scheduled)s THEN %(queued)s ELSE status END,
    status_at = CASE WHEN status = %(scheduled)s THEN now() ELSE status_at END,
    enqueued_at = coalesce(enqueued_at, now())
WHERE id = %(id)s
"""
#: -- promote_waiting --: waiting jobs (``queue_one``) whose named run ended take the name.
PROMOTE = """
WITH ready AS (
    SELECT w.id FROM jobs w
    WHERE w.waits_for IS NOT NULL AND w.status = %(scheduled)s AND w.release_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM jobs a WHERE a.job_name = w.waits_for
          AND a.status = ANY(%(unfinished)s))
    FOR UPDATE SKIP LOCKED
), promoted AS (
    UPDATE jobs SET job_name = jobs.waits_for, waits_for = NULL, release_at = now(),
        due_at = now()
    FROM ready WHERE jobs.id = ready.id
    RETURNING jobs.id
)
INSERT INTO job_events (job_id, from_status, to_status, at, detail)
SELECT id, %(scheduled)s::text, %(scheduled)s::text, now(),
       'previous run finished; released (overlap policy queue_one)'
FROM promoted
RETURNING job_id
"""
#: -- job_status --: one job's state.
JOB_STATUS = "SELECT status FROM jobs WHERE id = %(id)s"
#: -- note_event --: an event that changes no state (a fire skipped because of this job).
NOTE_EVENT = """
INSERT INTO job_events (job_id, from_status, to_status, at, detail)
SELECT id, status, status, now(), %(detail)s::text FROM jobs WHERE id = %(id)s
"""

# -- retention (tasks.maintenance) ---------------------------------------------------

#: -- purge_finished --: up to ``batch`` jobs in ``statuses`` that ended before ``cutoff``,
#: with their events. A job whose ``finished_at`` the ledger lost (a duplicate delivery
#: recorded after the end clears it) is dated by when it reached its status.
PURGE = """
WITH doomed AS (
    SELECT id FROM jobs
    WHERE status = ANY(%(statuses)s) AND coalesce(finished_at, status_at) < %(cutoff)s
    ORDER BY coalesce(finished_at, status_at)
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed)
)
DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)
"""

# -- figures: statistics, reports, health and metrics --------------------------------

#: -- created_counts --: jobs created since ``since`` by handler, by queue and by status.
CREATED = """
SELECT CASE WHEN GROUPING(handler) = 0 THEN 'handler'
            WHEN GROUPING(queue) = 0 THEN 'queue'
            ELSE 'status' END,
       coalesce(handler, queue, status),
       count(*)
FROM jobs
WHERE created_at >= %(since)s
GROUP BY GROUPING SETS ((handler), (queue), (status))
"""
#: -- unfinished_counts --: jobs in each unfinished state now, whenever created.
UNFINISHED_NOW = """
SELECT status, count(*) FROM jobs WHERE status = ANY(%(unfinished)s) GROUP BY status
"""
#: -- queue_states --: every job now, by queue and state.
QUEUE_STATES = "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status"
#: -- handler_states --: jobs created since ``since`` by handler and state.
HANDLER_STATES = """
SELECT handler, status, count(*) FROM jobs WHERE created_at >= %(since)s
GROUP BY 1, 2 ORDER BY 1, 2
"""
#: -- durations --: run times of the jobs created since ``since`` that completed, per handler.
DURATIONS = """
SELECT handler,
       count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s),
       max(duration_s)
FROM (
    SELECT handler, extract(epoch FROM finished_at - started_at)::float8 AS duration_s
    FROM jobs
    WHERE status = %(completed)s AND created_at >= %(since)s
      AND started_at IS NOT NULL AND finished_at IS NOT NULL
) completed
GROUP BY handler
ORDER BY handler
"""
#: -- top_failures --: jobs in ``failed`` states since ``since`` grouped by handler and
#: error, most frequent first, with the latest job of each group.
FAILURES = """
SELECT handler,
       last_error,
       count(*),
       (array_agg(id ORDER BY coalesce(finished_at, status_at) DESC, id DESC))[1]
FROM jobs
WHERE status = ANY(%(failed)s) AND created_at >= %(since)s
GROUP BY handler, last_error
ORDER BY count(*) DESC, max(coalesce(finished_at, status_at)) DESC, handler, last_error
LIMIT %(limit)s
"""
#: -- ended_by_queue --: per queue, jobs that ended in ``statuses`` since ``since``.
ENDED_BY_QUEUE = """
SELECT queue, count(*) FROM jobs
WHERE finished_at >= %(since)s AND status = ANY(%(statuses)s)
GROUP BY queue
"""
#: -- oldest_queued --: per queue, since when its oldest published job waits.
OLDEST_QUEUED = """
SELECT queue, min(status_at) FROM jobs
WHERE status = %(queued)s AND release_at IS NULL GROUP BY queue
"""
#: -- busy_workers --: workers running a job now.
BUSY_WORKERS = "SELECT DISTINCT worker FROM jobs WHERE status = %(running)s"
#: -- last_start --: when the newest job of a queue that started, started.
LAST_START = """
SELECT started_at FROM jobs WHERE queue = %(queue)s AND started_at IS NOT NULL
ORDER BY created_at DESC LIMIT 1
"""

# -- task figures: the attempts that ended lately, per task (app.web.metrics) --------

#: States a job finishes in after an attempt (a cancelled job may never have started).
ENDED_STATES = states({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEAD})
#: -- bound_reads --: for the rest of this transaction, statements end after ``ms``
#: milliseconds (0: never); they are not compiled (JIT: on a wide window the compile alone
#: took longer than the read); and each is planned for its parameters, so that a partial
#: index whose condition a state parameter meets is used (a generic plan cannot).
BOUND_READS = """
SELECT set_config('statement_timeout', %(ms)s::text, true), set_config('jit', 'off', true),
       set_config('plan_cache_mode', 'force_custom_plan', true)
"""
#: -- attempts_ended --: attempts that ended under ``window_s`` ago, by handler, queue,
#: outcome and duration bucket, with how many were timed and their total seconds.
#:
#: Two kinds of attempt end. The last one finishes its job (``completed``, ``failed``,
#: ``dead``): read from the job's row, finished at ``finished_at`` after running since
#: ``started_at`` (the latest start), as the reports time jobs. One that is retried
#: leaves a ``retrying`` event, timed from the job's latest ``running`` event before it
#: that a delivery wrote as it started (not a duplicate's note). A bucket is the number
#: of bounds below the duration, NULL for an attempt with no start: ``width_bucket``
#: counts the thresholds at or below its operand, so on the negated duration and the
#: negated bounds in ascending order (``negated``) it counts the bounds at or above the
#: duration, and a duration equal to a bound falls in that bound's bucket (Prometheus'
#: ``le``); ``buckets`` is the number of bounds. The indexes ``ix_jobs_finished`` and
#: ``ix_job_events_retrying_at`` (migration 0007) keep the read to the window's rows,
#: whatever the ledger's size; run it after :data:`BOUND_READS`, which has it planned
#: for its ``retrying`` (the partial index's condition).
ATTEMPTS_ENDED = """
WITH ended AS (
    SELECT handler, queue, status AS outcome,
           greatest(extract(epoch FROM finished_at - started_at)::float8, 0) AS duration_s
    FROM jobs
    WHERE finished_at >= now() - make_interval(secs => %(window_s)s)
      AND status = ANY(%(ended)s)
    UNION ALL
    SELECT j.handler, j.queue, e.to_status, started.duration_s
    FROM job_events e
    JOIN jobs j ON j.id = e.job_id
    LEFT JOIN LATERAL (
        SELECT greatest(extract(epoch FROM e.at - r.at)::float8, 0) AS duration_s
        FROM job_events r
        WHERE r.job_id = e.job_id AND r.at <= e.at
          AND r.to_status = %(running)s AND r.from_status IS DISTINCT FROM %(running)s
        ORDER BY r.at DESC
        LIMIT 1
    ) started ON true
    WHERE e.to_status = %(retrying)s AND e.from_status IS DISTINCT FROM e.to_status
      AND e.at >= now() - make_interval(secs => %(window_s)s)
)
SELECT handler, queue, outcome,
       %(buckets)s - width_bucket(-duration_s, %(negated)s::float8[]) AS bucket,
       count(*), count(duration_s), coalesce(sum(duration_s), 0)
FROM ended
GROUP BY 1, 2, 3, 4
"""

# -- progress: what a running job says of itself (ConveyorTask.progress) -------------

#: -- set_progress -- a running job's percentage and message; no row while it is not
#: running (it finished, or its record has not landed yet).
SET_PROGRESS = """
UPDATE jobs SET progress = %(progress)s, progress_message = %(message)s, progress_at = now()
WHERE id = %(id)s AND status = %(running)s
"""

# -- notices: mail about finished jobs (app.services.notifier) ----------------------

#: -- notices_due -- finishes the notifier has to deal with, oldest first, locked for this
#: transaction (another notifier skips them). The condition is the partial index's own
#: text (``NOTICE_DUE``, with its state written in): PostgreSQL uses a partial index only
#: for a query whose condition it can prove implies the index's, which a parameter hides.
NOTICES_DUE = f"""
SELECT id, handler, status, notify_to, finished_at FROM jobs
WHERE {NOTICE_DUE}
ORDER BY finished_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
#: -- notices_dealt_with -- mark finishes as dealt with (their own ``finished_at``).
NOTICES_DEALT_WITH = """
UPDATE jobs SET notified_finished_at = finished_at WHERE id = ANY(%(ids)s)
"""
