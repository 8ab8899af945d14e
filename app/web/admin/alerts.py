"""Alerts in the console: open ones first, read-only, with their notification jobs.

Raising and resolving belong to monitors (:mod:`app.services.alerts`); the console
only shows the ``alerts`` table and links each alert to the delivery jobs it enqueued.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from app.services.alerts import Severity
from app.web.admin.display import ReadOnlyAdmin, html, html_rows, job_link, label, pre
from app.web.models import Alert, Job

#: Severity → the console's colour class for it (console.css).
SEVERITY_CLASS = {"critical": "job-dead"}


class StateFilter(admin.SimpleListFilter):
    """Open or resolved; open by default, as the API lists them."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "open"), ("resolved", "resolved"), ("all", "all")]

    def choices(self, changelist: Any) -> Any:
        for choice in super().choices(changelist):
            if choice["display"] == "All":  # "all" is offered as a lookup of its own
                continue
            if self.value() is None and choice["display"] == "open":
                choice["selected"] = True
            yield choice

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value() or "open"
        if value == "open":
            return queryset.filter(resolved_at__isnull=True)
        if value == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class SeverityFilter(admin.SimpleListFilter):
    """The three severities, without scanning the table for them."""

    title = parameter_name = "severity"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(severity.value, severity.value) for severity in Severity]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(severity=self.value()) if self.value() else queryset


class AlertAdmin(ReadOnlyAdmin):
    """Alerts as monitors raised them: seen how often, notified when, resolved when."""

    list_display = (
        "key",
        "severity_badge",
        "subject",
        "count",
        "first_seen_at",
        "last_seen_at",
        "last_notified_at",
        "resolved_at",
    )
    list_display_links = ("key",)
    list_filter = (StateFilter, SeverityFilter, ("last_seen_at", admin.DateFieldListFilter))
    search_fields = ("key", "subject")
    list_per_page = 50
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("key", "severity", "subject", "detail_text")}),
        ("Sightings", {"fields": ("count", "first_seen_at", "last_seen_at", "last_notified_at")}),
        ("Resolution", {"fields": ("resolved_at", "resolution")}),
        ("Labels and notifications", {"fields": ("labels_json", "notifications")}),
    )
    readonly_fields = (
        "key", "severity", "subject", "detail_text", "count", "first_seen_at", "last_seen_at",
        "last_notified_at", "resolved_at", "resolution", "labels_json", "notifications",
    )  # fmt: skip

    @label("severity")
    def severity_badge(self, obj: Any) -> str:
        css = SEVERITY_CLASS.get(obj.severity, "")
        return html('<span class="job-status {}">{}</span>', css, obj.severity)

    @label("detail")
    def detail_text(self, obj: Any) -> str:
        return pre(obj.detail)

    @label("labels")
    def labels_json(self, obj: Any) -> str:
        return pre(obj.labels)

    @label("notification jobs")
    def notifications(self, obj: Any) -> str:
        jobs = Job.objects.filter(metadata__alert_id=obj.id).order_by("created_at")[:50]
        rows = html_rows(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    job.created_at.isoformat(sep=" ", timespec="seconds"),
                    job.handler,
                    (job.metadata or {}).get("event", ""),
                    job_link(job.id, job.status),
                )
                for job in jobs
            ),
        )
        if not rows:
            return "—"
        return html(
            '<table class="timeline"><thead><tr><th>enqueued</th><th>channel</th>'
            "<th>event</th><th>job</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


admin.site.register(Alert, AlertAdmin)
