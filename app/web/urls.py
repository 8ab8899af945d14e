"""URL map of the web process."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from app.storage import LINK_PREFIX
from app.web import downloads, health
from app.web.api import api
from app.web.metrics import metrics

urlpatterns = [
    path("health/live", health.live),
    path("health/ready", health.ready),
    path("metrics", metrics),
    path("api/v1/", api.urls),
    path("console/", admin.site.urls),
    path(f"{LINK_PREFIX}<str:token>", downloads.download),
]
