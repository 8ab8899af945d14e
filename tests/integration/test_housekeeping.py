"""Recurring housekeeping against the real ledger: statistics, the daily summary, recovery."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import text

from app.db import engine
from app.jobs import statistics
from app.jobs.heartbeat import Heartbeat
from app.jobs.service import JobService
from app.jobs.statistics import CACHE_KEY
from beat.service import ensure_django
from config.settings import get_settings
from tasks.reports import TOP_FAILURES, job_summary
from tasks.statistics import job_stats

FINISHED = ("completed", "failed", "cancelled", "dead")

INSERT_JOB = text("""
INSERT INTO jobs (id, handler, queue, status, status_at, attempts, deliveries, last_error,
                  worker, created_at, enqueued_at, started_at, finished_at)
VALUES (:id, :handler, :queue, :status, :status_at, 1, 1, :last_error,
        :worker, :created_at, :created_at, :started_at, :finished_at)
""")


@pytest.fixture(autouse=True)
def empty_ledger() -> Iterator[redis.Redis]:
    """An empty ledger and no cached statistics; yields a client of the cache's Redis."""
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events, workers"))
    client = redis.Redis.from_url(get_settings().cache_url)
    client.delete(CACHE_KEY)
    yield client
    client.delete(CACHE_KEY)
    client.close()


def add_job(
    handler: str,
    queue: str,
    status: str,
    *,
    created_ago: timedelta,
    ran_s: float = 1.0,
    error: str | None = None,
    worker: str | None = "w1@host",
) -> uuid.UUID:
    """Insert one job as the ledger records it: started a second after its creation, and
    finished ``ran_s`` later when its status is final."""
    job_id = uuid.uuid4()
    created_at = datetime.now(UTC) - created_ago
    started_at = None if status in ("scheduled", "queued") else created_at + timedelta(seconds=1)
    finished_at = (
        started_at + timedelta(seconds=ran_s) if started_at and status in FINISHED else None
    )
    status_at = finished_at or started_at or created_at
    with engine().begin() as conn:
        conn.execute(
            INSERT_JOB,
            {
                "id": job_id,
                "handler": handler,
                "queue": queue,
                "status": status,
                "status_at": status_at,
                "last_error": error,
                "worker": None if status in ("scheduled", "queued") else worker,
                "created_at": created_at,
                "started_at": started_at,
                "finished_at": finished_at,
            },
        )
    return job_id


def add_worker(hostname: str, last_seen_ago: timedelta) -> None:
    """Record a worker's last heartbeat."""
    last_seen = datetime.now(UTC) - last_seen_ago
    with engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workers (hostname, pid, queues, started_at, last_seen) "
                "VALUES (:hostname, 4242, 'default', :last_seen, :last_seen)"
            ),
            {"hostname": hostname, "last_seen": last_seen},
        )


SMTP_REFUSED = "SMTPRecipientsRefused: {'ana@example.com': (550, b'mailbox unavailable')}"
SMTP_TIMEOUT = "TimeoutError: smtp.example.com:25 timed out"
BAD_HOURS = "ValueError: hours=0 must be between 1 and 8784"


@pytest.fixture
def day_of_jobs() -> dict[str, uuid.UUID]:
    """Twelve jobs created in the last day over three handlers, and three older ones."""
    hour, minute = timedelta(hours=1), timedelta(minutes=1)
    add_job("reports.job_summary", "reports", "completed", created_ago=3 * hour, ran_s=10)
    add_job("reports.job_summary", "reports", "completed", created_ago=2 * hour, ran_s=20)
    add_job("reports.job_summary", "reports", "completed", created_ago=1 * hour, ran_s=30)
    bad_hours = add_job(
        "reports.job_summary", "reports", "failed", created_ago=30 * minute, error=BAD_HOURS
    )
    add_job("emails.send", "emails", "completed", created_ago=5 * hour, ran_s=4)
    add_job("emails.send", "emails", "dead", created_ago=4 * hour, error=SMTP_REFUSED)
    refused = add_job("emails.send", "emails", "dead", created_ago=2 * hour, error=SMTP_REFUSED)
    timeout = add_job("emails.send", "emails", "failed", created_ago=1 * hour, error=SMTP_TIMEOUT)
    add_job("demo.ping", "default", "running", created_ago=30 * minute)
    add_job("demo.ping", "default", "queued", created_ago=1 * minute)
    add_job("demo.ping", "default", "scheduled", created_ago=10 * minute)
    add_job("demo.ping", "default", "retrying", created_ago=20 * minute, error="TransientError")
    # Older than the window: only the running one counts, among the unfinished now.
    add_job("demo.ping", "default", "completed", created_ago=30 * hour, ran_s=100)
    add_job("demo.ping", "default", "running", created_ago=30 * hour)
    add_job("emails.send", "emails", "dead", created_ago=48 * hour, error=SMTP_REFUSED)
    return {"refused": refused, "timeout": timeout, "bad_hours": bad_hours}


DURATIONS = {
    "emails.send": {"count": 1, "median_s": 4.0, "p95_s": 4.0, "max_s": 4.0},
    "reports.job_summary": {"count": 3, "median_s": 20.0, "p95_s": 29.0, "max_s": 30.0},
}


def test_job_stats_counts_the_window_and_the_unfinished_jobs_and_caches_them(
    day_of_jobs: dict[str, uuid.UUID], empty_ledger: redis.Redis
) -> None:
    before = datetime.now(UTC)
    stats = job_stats.run(hours=24)

    assert stats["hours"] == 24
    since = datetime.fromisoformat(stats["since"])
    assert (
        before - timedelta(hours=24) <= since < before - timedelta(hours=24) + timedelta(seconds=5)
    )
    assert stats["created"] == {
        "total": 12,
        "by_handler": {"demo.ping": 4, "emails.send": 4, "reports.job_summary": 4},
        "by_queue": {"default": 4, "emails": 4, "reports": 4},
        "by_status": {
            "completed": 4,
            "dead": 2,
            "failed": 2,
            "queued": 1,
            "retrying": 1,
            "running": 1,
            "scheduled": 1,
        },
    }
    assert stats["unfinished"] == {"scheduled": 1, "queued": 1, "running": 2, "retrying": 1}
    assert stats["durations"] == DURATIONS

    assert json.loads(empty_ledger.get(CACHE_KEY) or "null") == stats
    ttl_s = get_settings().cache.stats_ttl_s
    assert ttl_s - 60 < empty_ledger.ttl(CACHE_KEY) <= ttl_s == 2 * 60 * 60
    assert statistics.cached() == stats
    assert statistics.cached(24) == stats


def test_job_stats_of_an_empty_ledger_reports_zeros() -> None:
    stats = job_stats.run(hours=1)
    assert stats["created"] == {"total": 0, "by_handler": {}, "by_queue": {}, "by_status": {}}
    assert stats["unfinished"] == {"scheduled": 0, "queued": 0, "running": 0, "retrying": 0}
    assert stats["durations"] == {}


def test_cached_job_stats_is_none_before_the_first_run() -> None:
    assert statistics.cached() is None


def test_cached_job_stats_are_only_given_while_fresh_and_for_their_window(
    empty_ledger: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = job_stats.run(hours=24)
    assert statistics.cached(24) == stats
    assert statistics.cached(1) is None, "another window is counted live"

    stale = {**stats, "generated_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat()}
    empty_ledger.set(CACHE_KEY, json.dumps(stale), ex=60)
    assert statistics.cached(24) is None, "older than cache.stats_ttl_s"

    empty_ledger.set(CACHE_KEY, json.dumps({k: v for k, v in stats.items() if k != "unfinished"}))
    assert statistics.cached(24) is None, "a shape the reader does not know"
    empty_ledger.set(CACHE_KEY, "not json")
    assert statistics.cached(24) is None

    monkeypatch.setattr(get_settings().cache, "stats_ttl_s", 0)
    empty_ledger.delete(CACHE_KEY)
    assert job_stats.run(hours=24)["hours"] == 24
    assert empty_ledger.get(CACHE_KEY) is None, "a TTL of 0 caches nothing"
    empty_ledger.set(CACHE_KEY, json.dumps(stats), ex=60)
    assert statistics.cached(24) is None, "and serves nothing"


def test_the_console_front_page_counts_now_whatever_the_statistics_say(
    empty_ledger: redis.Redis,
) -> None:
    ensure_django()
    from app.web.admin.overview import overview

    job = add_job("demo.ping", "default", "dead", created_ago=timedelta(hours=1))
    stats = job_stats.run(hours=24)
    assert statistics.cached(24) == stats, "fresh statistics are cached"
    assert overview()["dead"] == 1
    JobService().purge(job)
    assert overview()["dead"] == 0, "a purged dead job leaves the count at once"


def test_job_summary_reports_outcomes_durations_and_top_failures(
    day_of_jobs: dict[str, uuid.UUID],
) -> None:
    summary = job_summary.run(hours=24)

    assert summary["total"] == 12
    assert summary["by_handler"] == {
        "demo.ping": {"queued": 1, "retrying": 1, "running": 1, "scheduled": 1},
        "emails.send": {"completed": 1, "dead": 2, "failed": 1},
        "reports.job_summary": {"completed": 3, "failed": 1},
    }
    none = {"completed": 0, "failed": 0, "cancelled": 0, "dead": 0}
    assert summary["outcomes"] == {
        "demo.ping": none,
        "emails.send": {**none, "completed": 1, "failed": 1, "dead": 2},
        "reports.job_summary": {**none, "completed": 3, "failed": 1},
    }
    assert summary["durations"] == DURATIONS
    # Most frequent first; among equals, the most recent failure first.
    assert summary["top_failures"] == [
        {
            "handler": "emails.send",
            "error": SMTP_REFUSED,
            "count": 2,
            "latest_job_id": str(day_of_jobs["refused"]),
        },
        {
            "handler": "reports.job_summary",
            "error": BAD_HOURS,
            "count": 1,
            "latest_job_id": str(day_of_jobs["bad_hours"]),
        },
        {
            "handler": "emails.send",
            "error": SMTP_TIMEOUT,
            "count": 1,
            "latest_job_id": str(day_of_jobs["timeout"]),
        },
    ]
    assert json.loads(json.dumps(summary)) == summary


def test_job_summary_lists_only_the_ten_most_frequent_failures() -> None:
    for index in range(TOP_FAILURES + 2):
        for _ in range(index + 1):
            add_job(
                "demo.ping", "default", "dead", created_ago=timedelta(hours=1), error=f"E{index}"
            )
    failures = job_summary.run(hours=24)["top_failures"]
    assert [failure["error"] for failure in failures] == [f"E{i}" for i in range(11, 1, -1)]
    assert [failure["count"] for failure in failures] == list(range(12, 2, -1))


@pytest.mark.parametrize("task", [job_stats, job_summary], ids=["job_stats", "job_summary"])
@pytest.mark.parametrize("hours", [0, -1, 24 * 366 + 1])
def test_a_window_out_of_range_is_refused_naming_it(task: Any, hours: int) -> None:
    with pytest.raises(ValueError, match=rf"hours={hours} must be between 1 and 8784"):
        task.run(hours=hours)


def job_row(job_id: uuid.UUID) -> dict[str, Any]:
    """The ledger's row of one job."""
    return JobService().get(job_id)


def events_of(job_id: uuid.UUID) -> list[tuple[str | None, str, str | None]]:
    """(from, to, detail) of each event of one job, oldest first."""
    return [
        (event["from_status"], event["to_status"], event["detail"])
        for event in JobService().history(job_id)
    ]


def test_recovery_requeues_jobs_of_silent_workers_with_an_event() -> None:
    long_ago = timedelta(minutes=10)
    add_worker("gone@host", last_seen_ago=long_ago)
    add_worker("alive@host", last_seen_ago=timedelta(0))
    lost = add_job("demo.ping", "default", "running", created_ago=long_ago, worker="gone@host")
    unregistered = add_job(
        "emails.send", "emails", "running", created_ago=long_ago, worker="ghost@host"
    )
    healthy = add_job("demo.ping", "default", "running", created_ago=long_ago, worker="alive@host")
    before = datetime.now(UTC)

    assert run_recovery_on("alive@host") == 2

    for job_id, worker, queue in ((lost, "gone", "default"), (unregistered, "ghost", "emails")):
        row = job_row(job_id)
        assert row["status"] == "queued"
        assert row["status_at"] >= before - timedelta(seconds=5)
        assert row["release_at"] is not None, "handed back to the releaser"
        assert row["publish_options"] == {"queue": queue}
        assert events_of(job_id) == [
            ("running", "queued", f"recovered: worker {worker}@host stopped heartbeating")
        ]
    assert job_row(healthy)["status"] == "running"
    assert job_row(healthy)["release_at"] is None
    assert events_of(healthy) == []
    assert run_recovery_on("alive@host") == 0, "a recovered job is not recovered twice"


def run_recovery_on(hostname: str) -> int:
    """The recovery a worker's heartbeat thread runs (the one place recovery runs)."""
    return len(Heartbeat(hostname, ["default"]).recover())
