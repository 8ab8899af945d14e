"""The web process's Django app: API tokens, the audit trail, the console's models."""

from __future__ import annotations

from django.apps import AppConfig


class WebConfig(AppConfig):
    """Operator surfaces: console, API, health and metrics."""

    name = "app.web"
    label = "web"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"
