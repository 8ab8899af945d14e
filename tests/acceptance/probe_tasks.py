"""Tasks the acceptance tests run in real workers; each execution writes an effect row.

Counting rows counts executions: a result that eventually arrives would hide a
duplicate run, a row per execution does not.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time

import psycopg
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from app.celery import app
from app.errors import PermanentError, TransientError
from app.jobs.task import ConveyorTask
from config.settings import get_settings

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


@app.task(name="probe.record")
def record(key: str, sleep_s: float = 0.0, kill_first: bool = False) -> str:
    """Run once for ``key``: a start row, an optional sleep, a done row."""
    starts = effect(key, "start")
    if kill_first and starts == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(sleep_s)
    effect(key, "done")
    return key


@app.task(bind=True, name="probe.flaky", max_retries=3, retry_backoff=2)
def flaky(self: ConveyorTask, key: str, failures: int) -> int:
    """Fail with ``TransientError`` ``failures`` times, then succeed."""
    starts = effect(key, "start", self.request.retries)
    if starts <= failures:
        raise TransientError(f"{key}: attempt {starts} failed on purpose")
    effect(key, "done", self.request.retries)
    return starts


@app.task(bind=True, name="probe.broken", max_retries=2, retry_backoff=1)
def broken(self: ConveyorTask, key: str) -> str:
    """Fail with ``TransientError`` while a flag row for ``key`` exists."""
    effect(key, "start", self.request.retries)
    with connect() as conn:
        if conn.execute("SELECT 1 FROM probe_flags WHERE key = %s", (key,)).fetchone():
            raise TransientError(f"{key} is broken")
    effect(key, "done", self.request.retries)
    return key


@app.task(name="probe.rejects")
def rejects(key: str) -> None:
    """Fail with ``PermanentError`` at once: no retry."""
    effect(key, "start")
    raise PermanentError(f"{key} can never succeed")


@shared_task(name="probe.suicide")
def suicide(key: str) -> None:
    """Kill the process running it, every time (an OOM, a segfault)."""
    effect(key, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(bind=True, name="probe.stamp")
def stamp(self: ConveyorTask, sleep_s: float = 0.0) -> str:
    """One execution of a scheduled run: start and done rows keyed by the job id."""
    effect(str(self.request.id), "start")
    time.sleep(sleep_s)
    effect(str(self.request.id), "done")
    return str(self.request.id)


@app.task(name="probe.frozen")
def frozen() -> int:
    """How many objects this pool process's garbage collector leaves alone (gc.freeze)."""
    return gc.get_freeze_count()


# Time limits, memory and chords (test_time_limits.py, test_memory.py, test_chords.py).

#: What ``probe.hoard`` keeps for the life of its pool process: a leak, on purpose.
_hoard: list[bytes] = []


@app.task(
    bind=True,
    name="probe.overrun",
    soft_time_limit=1,
    time_limit=2,
    max_retries=1,
    retry_backoff=1,
)
def overrun(self: ConveyorTask, key: str, on_soft: str = "cleanup") -> str:
    """Sleep past the soft time limit (1 s); ``on_soft`` says what the task does then.

    ``cleanup``: write a cleanup row and re-raise. ``retry``: write it and raise
    ``TransientError`` (the retry returns at once). ``ignore``: write a soft row and
    sleep on until the hard limit (2 s) kills the process.
    """
    retries = int(self.request.retries or 0)
    effect(key, "start", retries)
    if on_soft == "retry" and retries:
        effect(key, "done", retries)
        return key
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        if on_soft == "ignore":
            effect(key, "soft", retries)
            time.sleep(10)
        effect(key, "cleanup", retries)
        if on_soft == "retry":
            raise TransientError(f"{key}: over the soft time limit") from None
        raise
    effect(key, "done", retries)
    return key


@app.task(name="probe.hoard")
def hoard(key: str, mib: int = 20) -> int:
    """Keep ``mib`` MiB more in this pool process, for its life; return the MiB it holds."""
    effect(key, "start")
    _hoard.append(b"\xff" * (mib << 20))  # written, so resident
    effect(key, "done")
    return sum(len(chunk) for chunk in _hoard) >> 20


@app.task(name="probe.collect")
def collect(results: list[str], key: str) -> list[str]:
    """A chord's callback: one row per execution, its phase naming the results it got."""
    effect(key, "callback " + json.dumps(results))
    return results


@app.task(name="probe.unclaimed", claims_deliveries=False)
def unclaimed(key: str) -> str:
    """Opted out of the claim: every delivery runs, a duplicate too."""
    effect(key, "start")
    return key


@app.task(name="probe.fails_plainly", dead_letters=False)
def fails_plainly(key: str) -> None:
    """Opted out of dead-lettering: failing for good leaves it ``failed``."""
    effect(key, "start")
    raise PermanentError(f"{key} fails")
