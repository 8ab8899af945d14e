"""Fixtures for tests that run real workers: effect rows and waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from sqlalchemy import text

from app.db import engine
from app.jobs import statistics
from tests import servers
from tests.acceptance import probe_tasks

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    """Provision the servers (once per run, whichever tier asks first)."""
    # pytest calls this as it imports this file, before it collects the tier's modules;
    # the Celery app ``probe_tasks`` built above is reconfigured for the servers.
    servers.provision(config)


class Effects:
    """Reads the effect rows that probe tasks write, one per execution."""

    def count(self, key: str, phase: str = "start") -> int:
        """How many times ``key`` reached ``phase``."""
        with probe_tasks.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM probe_effects WHERE key = %s AND phase = %s", (key, phase)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def rows(self, key_prefix: str = "", phase: str | None = None) -> list[tuple]:  # type: ignore[type-arg]
        """(key, phase, pid, retries, at) rows, oldest first."""
        with probe_tasks.connect() as conn:
            return conn.execute(
                "SELECT key, phase, pid, retries, at FROM probe_effects "
                "WHERE key LIKE %s AND (%s::text IS NULL OR phase = %s) ORDER BY id",
                (key_prefix + "%", phase, phase),
            ).fetchall()

    def flag(self, key: str, on: bool) -> None:
        """Set or clear the flag that makes ``probe.broken`` fail for ``key``."""
        with probe_tasks.connect() as conn:
            if on:
                conn.execute("INSERT INTO probe_flags VALUES (%s) ON CONFLICT DO NOTHING", (key,))
            else:
                conn.execute("DELETE FROM probe_flags WHERE key = %s", (key,))


@pytest.fixture
def effects() -> Iterator[Effects]:
    """An empty effect table and an empty ledger: nothing an earlier test left behind
    (a held job coming due, a job a killed worker left running, statistics cached by
    an hourly run) can act in this one."""
    with probe_tasks.connect() as conn:
        conn.execute(probe_tasks.DDL)
        conn.execute("TRUNCATE probe_effects, probe_flags")
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events, workers"))
    statistics.cache().delete(statistics.CACHE_KEY)
    yield Effects()


def wait_for(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    """Poll ``condition`` until truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)
