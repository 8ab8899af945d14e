"""Batch tasks the batching tests run in real workers; each handled batch writes its rows.

A batch writes one row per item, all in one transaction: a batch that fails writes
nothing, so counting rows per key counts the times an item was handled.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

from app.celery import app
from app.errors import PermanentError, TransientError
from app.jobs.batches import BatchTask, Item
from tests.acceptance.probe_tasks import connect

DDL = """
CREATE TABLE IF NOT EXISTS probe_batch_rows (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    batch text NOT NULL,
    size integer NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
TRUNCATE probe_batch_rows;
"""
#: Items in a batch of ``probe.batch_insert``, at most.
FLUSH_EVERY = 50
#: The most jobs of it a worker holds.
CAPACITY = 100


def _write(items: list[Item], pause_s: float = 0.0) -> list[str]:
    batch = uuid.uuid4().hex[:12]
    with connect() as conn, conn.transaction():
        for item in items:
            key = item.args[0]
            if item.kwargs.get("kill_first") and item.deliveries == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            if item.kwargs.get("poison"):
                raise PermanentError(f"{key} is poisoned")
            if item.kwargs.get("fail_first") and item.attempt == 1:
                raise TransientError(f"{key}: first attempt fails on purpose")
            conn.execute(
                "INSERT INTO probe_batch_rows (key, batch, size, attempt, pid) "
                "VALUES (%s, %s, %s, %s, %s)",
                (key, batch, len(items), item.attempt, os.getpid()),
            )
    time.sleep(pause_s)
    return [f"done:{item.args[0]}" for item in items]


@app.task(
    base=BatchTask,
    name="probe.batch_insert",
    flush_every=FLUSH_EVERY,
    flush_interval=0.3,
    capacity=CAPACITY,
    retry_backoff=1,
    retry_backoff_max=2,
)
def batch_insert(items: list[Item]) -> list[str]:
    """Insert a row per item, in one transaction; ``poison=True`` fails the batch for good,
    ``fail_first=True`` fails its first attempt (a transient error), ``kill_first=True``
    kills its process on its first delivery."""
    return _write(items)


@app.task(base=BatchTask, name="probe.batch_slow", flush_every=20, flush_interval=0.2, capacity=40)
def batch_slow(items: list[Item]) -> None:
    """As ``probe.batch_insert``, then half a second's work: the worker falls behind."""
    _write(items, pause_s=0.5)


@app.task(base=BatchTask, name="probe.batch_patient", flush_every=100, flush_interval=600)
def batch_patient(items: list[Item]) -> None:
    """Batches of 100, or after ten minutes: a partial batch waits for a shutdown."""
    _write(items)
