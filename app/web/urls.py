"""URL map of the web process."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from app.storage import LINK_PREFIX
from app.web import downloads, health
from app.web.admin import mail
from app.web.api import api
from app.web.metrics import metrics

urlpatterns = [
    path("health/live", health.live),
    path("health/ready", health.ready),
    path("metrics", metrics),
    path("api/v1/", api.urls),
    # The mail sink's pages (development), ahead of the admin's own catch-all patterns.
    path("console/mail/", admin.site.admin_view(mail.inbox), name="console_mail"),
    path(
        "console/mail/<str:name>/",
        admin.site.admin_view(mail.message),
        name="console_mail_message",
    ),
    path(
        "console/mail/<str:name>/raw",
        admin.site.admin_view(mail.raw),
        name="console_mail_raw",
    ),
    path("console/", admin.site.urls),
    path(f"{LINK_PREFIX}<str:token>", downloads.download),
]
