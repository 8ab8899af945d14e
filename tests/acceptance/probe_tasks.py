"""Tasks the acceptance tests run in real workers; each execution writes an effect row.

Counting rows counts executions: a result that eventually arrives would hide a
duplicate run, a row per execution does not.
"""

from __future__ import annotations

import gc
import os
import signal
import time

import psycopg

from app.celery import app
from app.errors import PermanentError, TransientError
from config.settings import get_settings
from tasks.base import ConveyorTask

DDL = """
CREATE TABLE IF NOT EXISTS probe_effects (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    phase text NOT NULL,
    pid integer NOT NULL,
    retries integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS probe_flags (key text PRIMARY KEY);
"""


def connect() -> psycopg.Connection:
    """A connection to the run's database (kept apart when a test takes Conveyor's down)."""
    url = os.environ.get("CONVEYOR_TEST_EFFECTS_URL") or get_settings().database_url
    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(url, autocommit=True)


def effect(key: str, phase: str, retries: int = 0) -> int:
    """Record one effect; return how many ``phase`` rows ``key`` now has."""
    with connect() as conn:
        conn.execute(
            "INSERT INTO probe_effects (key, phase, pid, retries) VALUES (%s, %s, %s, %s)",
            (key, phase, os.getpid(), retries),
        )
        row = conn.execute(
            "SELECT count(*) FROM probe_effects WHERE key = %s AND phase = %s", (key, phase)
        ).fetchone()
    assert row is not None
    return int(row[0])


@app.task(base=ConveyorTask, name="probe.record")
def record(key: str, sleep_s: float = 0.0, kill_first: bool = False) -> str:
    """Run once for ``key``: a start row, an optional sleep, a done row."""
    starts = effect(key, "start")
    if kill_first and starts == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(sleep_s)
    effect(key, "done")
    return key


@app.task(base=ConveyorTask, bind=True, name="probe.flaky", max_retries=3, retry_backoff=2)
def flaky(self: ConveyorTask, key: str, failures: int) -> int:
    """Fail with ``TransientError`` ``failures`` times, then succeed."""
    starts = effect(key, "start", self.request.retries)
    if starts <= failures:
        raise TransientError(f"{key}: attempt {starts} failed on purpose")
    effect(key, "done", self.request.retries)
    return starts


@app.task(base=ConveyorTask, bind=True, name="probe.broken", max_retries=2, retry_backoff=1)
def broken(self: ConveyorTask, key: str) -> str:
    """Fail with ``TransientError`` while a flag row for ``key`` exists."""
    effect(key, "start", self.request.retries)
    with connect() as conn:
        if conn.execute("SELECT 1 FROM probe_flags WHERE key = %s", (key,)).fetchone():
            raise TransientError(f"{key} is broken")
    effect(key, "done", self.request.retries)
    return key


@app.task(base=ConveyorTask, name="probe.rejects")
def rejects(key: str) -> None:
    """Fail with ``PermanentError`` at once: no retry."""
    effect(key, "start")
    raise PermanentError(f"{key} can never succeed")


@app.task(base=ConveyorTask, name="probe.suicide")
def suicide(key: str) -> None:
    """Kill the process running it, every time (an OOM, a segfault)."""
    effect(key, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(base=ConveyorTask, bind=True, name="probe.stamp")
def stamp(self: ConveyorTask, sleep_s: float = 0.0) -> str:
    """One execution of a scheduled run: start and done rows keyed by the job id."""
    effect(str(self.request.id), "start")
    time.sleep(sleep_s)
    effect(str(self.request.id), "done")
    return str(self.request.id)


@app.task(base=ConveyorTask, name="probe.frozen")
def frozen() -> int:
    """How many objects this pool process's garbage collector leaves alone (gc.freeze)."""
    return gc.get_freeze_count()
