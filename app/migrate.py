"""Database migrations for every part that owns tables."""

from __future__ import annotations

import os


def migrate() -> None:
    """Apply Django's migrations (beat schedules, console) and create the result tables."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    from app.celery import app

    # Celery's database backend creates its tables when it first opens a session.
    app.backend.ResultSession().close()  # type: ignore[attr-defined]
