"""Conveyor's own recurring jobs, declared in code and synced into the beat tables.

The leader beat syncs these when it takes over (:meth:`beat.service.ScheduleService.sync_defaults`):
a missing one is created, one whose code changed is updated, and one an operator
edited (console, API, CLI or SQL) is left as the operator made it. One this module
no longer declares is withdrawn: deleted if nobody edited it, else disabled and
handed to the operators. Tasks are named by their registered name; this module
never imports ``tasks``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recurring:
    """One declared schedule."""

    name: str
    task: str
    cron: str
    timezone: str | None = None  #: None: the ``timezone`` setting
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None  #: None: the task's route
    misfire: str = "fire_once"
    overlap: str = "skip"
    description: str = ""


def digest(definition: dict[str, Any]) -> str:
    """A stable hash of a schedule's definition (what an edit would change)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


DEFAULT_SCHEDULES: tuple[Recurring, ...] = (
    Recurring(
        name="purge finished jobs",
        task="maintenance.purge_finished_jobs",
        cron="0 2 * * *",
        description="Delete finished jobs and their events past their retention.",
    ),
    Recurring(
        name="purge schedule fires",
        task="maintenance.purge_schedule_fires",
        cron="15 2 * * *",
        description="Delete schedule fire records past their retention.",
    ),
    Recurring(
        name="purge audit records",
        task="maintenance.purge_audit_records",
        cron="30 2 * * *",
        description="Delete audit records past their retention.",
    ),
    Recurring(
        name="purge expired files",
        task="storage.purge_expired",
        cron="45 2 * * *",
        description="Delete stored files past their expiry, with their metadata.",
    ),
    Recurring(
        name="job statistics",
        task="statistics.job_stats",
        cron="@hourly",
        kwargs={"hours": 24},
        description="Jobs per handler, queue and state, cached in Redis for the console.",
    ),
    Recurring(
        name="daily job report",
        task="reports.job_summary",
        cron="0 6 * * *",
        kwargs={"hours": 24},
        description="Outcomes, durations and top failures of the last day.",
    ),
    # The services framework's jobs and the worker-service template's cleanup (issue 14),
    # at the framework's times in UTC (tasks.cleanup, tasks.catalog_reports).
    Recurring(
        name="catalog-retention",
        task="maintenance.purge_catalog",
        cron="0 2 * * *",
        timezone="UTC",
        description="Delete catalog audit entries past 90 days and soft-deleted products "
        "past 30 days that no order line names.",
    ),
    Recurring(
        name="catalog-daily-sales-report",
        task="reports.catalog_daily",
        cron="0 6 * * *",
        timezone="UTC",
        description="Yesterday's sales, mailed as HTML with every product sold as CSV.",
    ),
    Recurring(
        name="catalog-weekly-inactive-cleanup",
        task="maintenance.cleanup_inactive_products",
        cron="0 3 * * SUN",
        timezone="UTC",
        kwargs={"inactive_days": 90, "batch_size": 100, "dry_run": False},
        description="Delete products unchanged for 90 days that no order names, 100 a batch.",
    ),
    Recurring(
        name="catalog-monthly-sales-report",
        task="reports.catalog_monthly",
        cron="0 0 1 * *",
        timezone="UTC",
        description="Last month's sales, mailed as HTML with every product sold as CSV.",
    ),
    # The sample catalog's jobs (tasks.catalog), at the times its specification gives in
    # UTC whatever ``timezone`` says; names without spaces, for POST /triggers/<name>.
    Recurring(
        name="catalog-daily-analytics",
        task="catalog.daily_analytics",
        cron="0 2 * * *",
        timezone="UTC",
        description="Yesterday's sales per day, top products and revenue by category, "
        "cached in Redis for 24 h.",
    ),
    Recurring(
        name="catalog-cache-cleanup",
        task="catalog.cleanup_cache",
        cron="0 */6 * * *",
        timezone="UTC",
        description="Delete the catalog's cache keys without a TTL and stale analytics.",
    ),
    Recurring(
        name="catalog-popularity",
        task="catalog.update_popularity",
        cron="0 */12 * * *",
        timezone="UTC",
        description="Score products from their sales and stock; top scores in Redis for 12 h.",
    ),
    Recurring(
        name="catalog-inventory-report",
        task="catalog.inventory_report",
        cron="0 8 * * MON",
        timezone="UTC",
        description="The weekly inventory report, a CSV kept 30 days in file storage.",
    ),
    Recurring(
        name="catalog-monthly-cleanup",
        task="catalog.monthly_cleanup",
        cron="0 3 1 * *",
        timezone="UTC",
        description="Delete cancelled orders, with their lines, placed more than "
        "catalog.retention_days (90) ago.",
    ),
)
