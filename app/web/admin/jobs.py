"""Jobs and dead letters: the ledger, read-only, changed only through JobService."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import CharField
from django.db.models.functions import Cast
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import path, reverse
from django.utils import timezone as django_tz
from django.utils.http import url_has_allowed_host_and_scheme
from django_celery_beat.models import PeriodicTask

from app.errors import ConveyorError, InvalidTransition, JobNameTaken, JobNotFound
from app.jobs.models import JobStatus
from app.jobs.service import JobService
from app.web import audit
from app.web.admin.display import STATES, ReadOnlyAdmin, html, html_rows, label, pre
from app.web.models import Job, JobEvent
from config.settings import QUEUES


def choice_filter(
    field: str, choices: Callable[[], Iterable[str]], parameter: str = ""
) -> type[admin.SimpleListFilter]:
    """A list filter on ``field`` offering known choices (no scan of the ledger for them)."""

    class Filter(admin.SimpleListFilter):
        title = parameter or field
        parameter_name = parameter or field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(choice, choice) for choice in choices()]

        def queryset(self, request: HttpRequest, queryset: Any) -> Any:
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    return Filter


class JobAdmin(ReadOnlyAdmin):
    """The ledger, read-only: filters, the timeline, requeue and cancel."""

    change_form_template = "admin/web/job_change_form.html"
    list_display = (
        "short_id",
        "handler",
        "queue",
        "status_badge",
        "attempts",
        "created_at",
        "finished_at",
        "job_name",
        "operate",
    )
    list_display_links = ("short_id",)
    list_filter = (
        choice_filter("status", lambda: STATES),
        choice_filter("handler", lambda: sorted(JobService().handlers())),
        choice_filter("queue", lambda: QUEUES),
        choice_filter(
            "metadata__schedule",
            lambda: PeriodicTask.objects.order_by("name").values_list("name", flat=True),
            parameter="schedule",
        ),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("job_name", "handler", "metadata__schedule")
    actions = ("requeue", "cancel", "purge")
    list_per_page = 50
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("id", "handler", "job_name", "queue", "status", "status_at")}),
        ("Runs", {"fields": ("attempts", "deliveries", "worker", "schedule", "progress_text")}),
        ("Times", {"fields": ("created_at", "enqueued_at", "due_at", "started_at", "finished_at")}),
        ("Timeline", {"fields": ("timeline",)}),
        ("Error", {"fields": ("error", "traceback_text")}),
        (
            "Payload, metadata and result",
            {"fields": ("payload_json", "metadata_json", "result_json")},
        ),
    )
    readonly_fields = (
        "id", "handler", "job_name", "queue", "status", "status_at", "attempts", "deliveries",
        "worker", "schedule", "progress_text", "created_at", "enqueued_at", "due_at",
        "started_at", "finished_at",
        "timeline", "error", "traceback_text", "payload_json", "metadata_json", "result_json",
    )  # fmt: skip

    def may_operate(self, request: HttpRequest) -> bool:
        """Requeue and cancel: the model's change permission (every superuser has it)."""
        return bool(request.user.has_perm("web.change_job"))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.GET.get("status") == JobStatus.DEAD:
            extra_context = {
                "title": "Dead letters",
                "subtitle": "Jobs that failed for good; requeue runs them again, same id.",
                **(extra_context or {}),
            }
        return super().changelist_view(request, extra_context)

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lower()
        if re.fullmatch(r"[0-9a-f-]{4,36}", term):  # an id or the start of one
            by_id = queryset.annotate(id_text=Cast("id", CharField())).filter(
                id_text__startswith=term
            )
            found = found | queryset.filter(pk__in=by_id.values("pk"))
        return found, duplicates

    # columns and read-only blocks

    @label("id")
    def short_id(self, obj: Any) -> str:
        return str(obj.id)[:8]

    @label("status")
    def status_badge(self, obj: Any) -> str:
        return html('<span class="job-status job-{}">{}</span>', obj.status, obj.status)

    @label("")
    def operate(self, obj: Any) -> str:
        """A button per row, submitting the list's own form (it carries the CSRF token)."""
        if obj.status in ("failed", "dead", "cancelled"):
            operation = "requeue"
        elif obj.status in ("scheduled", "queued", "retrying"):
            operation = "cancel"
        else:
            return ""
        url = reverse(f"admin:web_job_{operation}", args=[obj.id])
        return html(
            '<button type="submit" class="row-button" formaction="{}">{}</button>',
            url,
            operation.capitalize(),
        )

    def timeline(self, obj: Any) -> str:
        events = JobEvent.objects.filter(job_id=obj.id).order_by("at", "id")
        rows = html_rows(
            "<tr><td>{}</td><td>{} → <strong>{}</strong></td>"
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    django_tz.localtime(event.at).isoformat(sep=" ", timespec="milliseconds"),
                    event.from_status or "—",
                    event.to_status,
                    event.attempt,
                    event.worker or "",
                    event.detail or "",
                )
                for event in events
            ),
        )
        return html(
            '<table class="timeline"><thead><tr><th>at</th><th>transition</th><th>attempt</th>'
            "<th>worker</th><th>detail</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @label("progress")
    def progress_text(self, obj: Any) -> str:
        """What the job last said of itself while it ran: a bar, the percentage, the
        message and when."""
        if obj.progress is None:
            return "-"
        return html(
            '<progress max="100" value="{}"></progress> {} % {} <span class="quiet">({})</span>',
            obj.progress,
            obj.progress,
            obj.progress_message or "",
            obj.progress_at.isoformat(timespec="seconds") if obj.progress_at else "",
        )

    @label("error")
    def error(self, obj: Any) -> str:
        return pre(obj.last_error)

    @label("traceback")
    def traceback_text(self, obj: Any) -> str:
        return pre(obj.traceback)

    @label("payload")
    def payload_json(self, obj: Any) -> str:
        return pre(obj.payload)

    @label("metadata")
    def metadata_json(self, obj: Any) -> str:
        return pre(obj.metadata)

    @label("result")
    def result_json(self, obj: Any) -> str:
        return pre(obj.result)

    # writes: all through JobService, each audited

    @label("Requeue selected jobs")
    def requeue(self, request: HttpRequest, queryset: Any) -> None:
        self._operate(request, list(queryset.values_list("id", "status")), "requeue")

    @label("Cancel selected jobs")
    def cancel(self, request: HttpRequest, queryset: Any) -> None:
        self._operate(request, list(queryset.values_list("id", "status")), "cancel")

    @label("Purge selected dead jobs")
    def purge(self, request: HttpRequest, queryset: Any) -> None:
        self._operate(request, list(queryset.values_list("id", "status")), "purge")

    def _operate(self, request: HttpRequest, jobs: list[tuple[Any, str]], operation: str) -> None:
        if not self.may_operate(request):
            raise PermissionDenied
        service = JobService()
        done, refused = 0, []
        for job_id, status in jobs:
            try:
                if operation == "requeue":
                    service.requeue(job_id)
                elif operation == "purge":
                    service.purge(job_id)
                else:
                    service.cancel(job_id)
            except (InvalidTransition, JobNotFound, JobNameTaken) as exc:
                refused.append(str(exc))
                continue
            except ConveyorError as exc:  # the broker is down: stop, say so
                refused.append(str(exc))
                break
            done += 1
            after = Job.objects.filter(id=job_id).values_list("status", flat=True).first()
            audit.record(
                request,
                f"job.{operation}",
                f"job:{job_id}",
                {"status": status},
                {"status": after, "bulk": len(jobs) > 1},
            )
        verb = {"requeue": "Requeued", "purge": "Purged"}.get(operation, "Cancelled")
        if done:
            self.message_user(request, f"{verb} {done} job{'s' if done != 1 else ''}.")
        for reason in refused[:5]:
            self.message_user(request, reason, messages.ERROR)
        if len(refused) > 5:
            self.message_user(request, f"… and {len(refused) - 5} more refused", messages.ERROR)

    def get_urls(self) -> list[Any]:
        urls = [
            path(
                f"<path:object_id>/{operation}/",
                self.admin_site.admin_view(self._operation_view(operation)),
                name=f"web_job_{operation}",
            )
            for operation in ("requeue", "cancel")
        ]
        return [*urls, *super().get_urls()]

    def _operation_view(self, operation: str) -> Callable[[HttpRequest, str], HttpResponse]:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            job = self.get_object(request, object_id)
            if job is None:
                raise Http404(f"no job with id {object_id!r}")
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            self._operate(request, [(job.id, job.status)], operation)
            back = request.META.get("HTTP_REFERER", "")
            if not url_has_allowed_host_and_scheme(back, {request.get_host()}):
                back = reverse("admin:web_job_change", args=[job.id])
            return HttpResponseRedirect(back)

        return view


admin.site.register(Job, JobAdmin)
