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
    assert {"services", "alerts"} <= tables


def test_every_django_model_is_in_a_migration() -> None:
    """A model change without its migration (an unmanaged view included) fails here."""
    from django.core.management import call_command

    from beat.service import ensure_django

    ensure_django()
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
