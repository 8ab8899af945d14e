"""Services in the console: each service on each host, read-only, as its process wrote it.

The services runtime (:mod:`app.services`) owns the rows; the console shows them with
whether each is alive (heard from within three heartbeats) and, for a singleton,
which host holds its lease now.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Concat, Now
from django.http import HttpRequest
from django.utils import timezone as django_tz

from app.services import ServiceState
from app.services.store import lease_name
from app.web.admin.display import ReadOnlyAdmin, html, label, pre
from app.web.health import service_freshness_s
from app.web.models import Service
from beat.models import BeatLease

#: Service state → the console's colour class for it (console.css).
STATE_CLASS = {"running": "job-completed", "failed": "job-failed", "degraded": "job-failed"}


class ServiceAdmin(ReadOnlyAdmin):
    """The services table: state, heartbeat, last success and error, errors in a row."""

    list_display = (
        "name",
        "host",
        "mode",
        "state_badge",
        "alive",
        "lease",
        "heartbeat_at",
        "last_success_at",
        "consecutive_errors",
        "items_processed",
        "short_error",
    )
    list_display_links = ("name",)
    list_filter = ("state", "mode", "host")
    search_fields = ("name", "host")
    list_per_page = 100
    fieldsets = (
        (None, {"fields": ("name", "host", "mode", "state", "lease", "pid", "identity")}),
        ("Life", {"fields": ("started_at", "heartbeat_at", "alive", "last_success_at")}),
        ("Work", {"fields": ("items_processed", "consecutive_errors", "detail_json")}),
        ("Error", {"fields": ("last_error_at", "error")}),
    )
    readonly_fields = (
        "name", "host", "mode", "state", "lease", "pid", "identity", "started_at",
        "heartbeat_at", "alive", "last_success_at", "items_processed", "consecutive_errors",
        "detail_json", "last_error_at", "error",
    )  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> Any:
        """The rows, each with its singleton lease's live holder (``lease_holder``)."""
        holder = BeatLease.objects.filter(
            name=Concat(Value(lease_name("")), OuterRef("name")), expires_at__gt=Now()
        ).values("holder")[:1]
        return super().get_queryset(request).annotate(lease_holder=Subquery(holder))

    @label("state")
    def state_badge(self, obj: Any) -> str:
        css = STATE_CLASS.get(obj.state, "")
        return html('<span class="job-status {}">{}</span>', css, obj.state)

    @label("alive")
    def alive(self, obj: Any) -> bool:
        fresh = django_tz.now() - timedelta(seconds=service_freshness_s())
        return bool(obj.heartbeat_at >= fresh)

    alive.boolean = True  # type: ignore[attr-defined]

    @label("lease")
    def lease(self, obj: Any) -> str:
        """For a singleton: held here, held by another host, or by nobody."""
        if obj.mode != "singleton":
            return "—"
        holder = getattr(obj, "lease_holder", None)
        if holder is None:
            return "nobody holds it"
        if holder == obj.identity:
            return "held here"
        return f"held by {holder}"

    @label("last error")
    def short_error(self, obj: Any) -> str:
        if not obj.last_error or obj.state == ServiceState.RUNNING:
            return ""
        text = str(obj.last_error)
        return text if len(text) <= 80 else text[:79] + "…"

    @label("last error")
    def error(self, obj: Any) -> str:
        return pre(obj.last_error)

    @label("detail")
    def detail_json(self, obj: Any) -> str:
        return pre(obj.detail)


admin.site.register(Service, ServiceAdmin)
