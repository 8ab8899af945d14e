"""`python -m app migrate` creates every table the processes need."""

from __future__ import annotations

from sqlalchemy import inspect

from app.db import engine
from app.migrate import migrate


def test_migrate_creates_ledger_and_schedule_tables_and_is_repeatable() -> None:
    migrate()  # the suite migrated once already: a second run must be a no-op
    tables = set(inspect(engine()).get_table_names())
    assert {"jobs", "job_events", "conveyor_alembic_version"} <= tables
    assert {"django_celery_beat_periodictask", "django_celery_beat_crontabschedule"} <= tables
