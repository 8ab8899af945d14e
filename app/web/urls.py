"""URL map of the web process."""

from __future__ import annotations

from django.urls import path

from app.web import health

urlpatterns = [
    path("health/live", health.live),
    path("health/ready", health.ready),
]
