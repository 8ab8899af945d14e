"""Database migrations for every part that owns tables."""

from __future__ import annotations

import os


def migrate() -> None:
    """Apply the ledger's migrations and Django's (beat schedules, console)."""
    from alembic import command

    from app.jobs.migrate_config import alembic_config

    command.upgrade(alembic_config(), "head")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
