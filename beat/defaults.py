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
)
