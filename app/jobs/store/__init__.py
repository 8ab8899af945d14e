"""The ledger layer: every statement on ``jobs``, ``job_events`` and ``workers``.

* :mod:`~app.jobs.store.queries`: the statements, named, in one module;
* :mod:`~app.jobs.store.jobs`: :class:`JobStore`, the repository of jobs one at a time
  and in pages, where driver errors become Conveyor's;
* :mod:`~app.jobs.store.release`: held jobs and their release, schedules' waiting runs;
* :mod:`~app.jobs.store.workers`: heartbeats and the recovery of jobs of silent workers;
* :mod:`~app.jobs.store.figures`: counts and times for statistics, reports, health, metrics;
* :mod:`~app.jobs.store.notices`: finished jobs someone is to hear of (the notifier).

Functions take the caller's SQLAlchemy connection, so a caller's transaction spans
them. The claim and the recorder, the worker's hot path, run the statements of
:mod:`~app.jobs.store.queries` on their own psycopg connections instead. The
console's Django models are read-only views of the same tables.
"""

from __future__ import annotations

from app.jobs.store import figures, jobs, notices, queries, release, workers
from app.jobs.store.figures import counts
from app.jobs.store.jobs import EVENTS, JOBS, JobStore, decode_cursor, encode_cursor
from app.jobs.store.queries import FINISHED_STATES, UNFINISHED_STATES

__all__ = [
    "EVENTS",
    "FINISHED_STATES",
    "JOBS",
    "UNFINISHED_STATES",
    "JobStore",
    "counts",
    "decode_cursor",
    "encode_cursor",
    "figures",
    "jobs",
    "notices",
    "queries",
    "release",
    "workers",
]
