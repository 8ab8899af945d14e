"""Conveyor's own recurring jobs, declared in code and installed into the beat database.

Tasks are named by their registered name; this module never imports ``tasks``.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

#: Entry name → Celery beat entry. Beat's database scheduler installs these at start.
DEFAULT_SCHEDULES: dict[str, dict[str, Any]] = {
    "purge finished jobs": {
        "task": "maintenance.purge_finished_jobs",
        "schedule": crontab(hour="2", minute="0"),
    },
    "daily job summary": {
        "task": "reports.job_summary",
        "schedule": crontab(hour="6", minute="0"),
        "kwargs": {"hours": 24},
    },
}
