"""The scheduler's Django app: its tables sit beside django-celery-beat's."""

from __future__ import annotations

from django.apps import AppConfig


class BeatConfig(AppConfig):
    """Conveyor's schedule options, fire records and the beat leader lease."""

    name = "beat"
    label = "conveyor_beat"
    verbose_name = "Scheduling"
    default_auto_field = "django.db.models.BigAutoField"
