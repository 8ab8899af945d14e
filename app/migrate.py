"""Database migrations for every part that owns tables."""

from __future__ import annotations

import os


def migrate() -> None:
    """Apply the ledger's and Django's migrations and create the result tables."""
    from alembic import command

    from app.jobs.migrate_config import alembic_config

    command.upgrade(alembic_config(), "head")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    from app.celery import app

    # Celery's database backend creates its tables when it first opens a session.
    app.backend.ResultSession().close()  # type: ignore[attr-defined]
