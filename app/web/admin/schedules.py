"""Schedules: django-celery-beat's rows, written only through ScheduleService."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import path, reverse
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from app import schedule
from app.errors import ConveyorError
from app.web import audit
from app.web.admin.display import html, html_rows, job_link, label
from app.web.admin.dst import fire_marks
from app.web.admin.schedule_form import ScheduleForm, describe
from app.web.models import Job
from beat.models import ScheduleFire
from beat.service import ScheduleService, expression_of_task

for _model in (PeriodicTask, CrontabSchedule, IntervalSchedule, SolarSchedule, ClockedSchedule):
    # Their forms write the tables directly; every schedule write here is the form below.
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class ScheduleAdmin(admin.ModelAdmin):
    """Schedules: next fire times with DST marked, policies, last runs, run now."""

    form = ScheduleForm
    change_form_template = "admin/web/schedule_change_form.html"
    list_display = (
        "name",
        "task",
        "expression",
        "enabled",
        "next_fire",
        "last_run",
        "misfire",
        "overlap",
    )
    list_filter = ("enabled", "task")
    search_fields = ("name", "task", "description")
    ordering = ("name",)
    actions = ("run_now", "enable", "disable")

    def get_queryset(self, request: HttpRequest) -> Any:
        fires = ScheduleFire.objects.filter(schedule_name=OuterRef("name")).order_by("-fire_time")
        return (
            super()
            .get_queryset(request)
            .select_related("crontab", "interval", "clocked", "conveyor")
            .annotate(
                last_fire_time=Subquery(fires.values("fire_time")[:1]),
                last_outcome=Subquery(fires.values("outcome")[:1]),
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        main = ("name", "task", "cron", "timezone", "kwargs", "queue", "enabled", "description")
        sets: list[Any] = [
            (None, {"fields": main}),
            ("Policies", {"fields": ("misfire", "overlap", "catch_up_limit")}),
        ]
        if obj is not None:
            sets += [
                ("Next 10 fire times", {"fields": ("next_fire_times",)}),
                ("Runs", {"fields": ("state", "recent_runs")}),
            ]
        return sets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("name", "next_fire_times", "state", "recent_runs")

    # columns and read-only blocks

    @label("schedule")
    def expression(self, obj: Any) -> str:
        options = getattr(obj, "conveyor", None)
        tz = obj.crontab.timezone if obj.crontab_id else "UTC"
        return f"{expression_of_task(obj, options.second if options else '0')} ({tz})"

    @label("next fire")
    def next_fire(self, obj: Any) -> str:
        if not obj.enabled:
            return "disabled"
        times = self._times(obj, 1)
        return times[0].isoformat(sep=" ") if isinstance(times, list) and times else "—"

    @label("last run: outcome")
    def last_run(self, obj: Any) -> str:
        if obj.last_fire_time is None:
            return "—"
        return f"{obj.last_fire_time.isoformat(sep=' ', timespec='seconds')}: {obj.last_outcome}"

    def misfire(self, obj: Any) -> str:
        options = getattr(obj, "conveyor", None)
        return str(options.misfire_policy) if options else "fire_once"

    def overlap(self, obj: Any) -> str:
        options = getattr(obj, "conveyor", None)
        return str(options.overlap_policy) if options else "skip"

    @label("in the schedule's time zone")
    def next_fire_times(self, obj: Any) -> str:
        times = self._times(obj, 10)
        if isinstance(times, str):
            return times
        if not times:
            return "none: it fires once, when created"
        options = getattr(obj, "conveyor", None)
        marks = fire_marks(times, expression_of_task(obj, options.second if options else "0"))
        items = html_rows(
            '<li><time datetime="{}">{}</time> <span class="fire-mark">{}</span></li>',
            (
                (when.isoformat(), when.strftime("%a %Y-%m-%d %H:%M:%S %Z (UTC%z)"), mark)
                for when, mark in zip(times, marks, strict=True)
            ),
        )
        note = "" if obj.enabled else "Disabled: beat fires none of these until enabled. "
        return html('<p>{}</p><ol class="fire-times">{}</ol>', note, items)

    def state(self, obj: Any) -> str:
        info = describe(obj.name)
        edited = (
            info["edited_at"].isoformat(sep=" ", timespec="seconds") if info["edited_at"] else ""
        )
        return html(
            "Managed by {}; last edited by {} {}; {} runs. {}",
            info["managed_by"],
            info["edited_by"] or "—",
            edited,
            info["total_run_count"],
            html('<strong class="errornote">Disabled by beat: {}</strong>', info["error"])
            if info["error"]
            else "",
        )

    @label("last 10 fires")
    def recent_runs(self, obj: Any) -> str:
        fires = list(
            ScheduleFire.objects.filter(schedule_name=obj.name).order_by("-fire_time")[:10]
        )
        if not fires:
            return "not fired yet"
        every = html(
            '<p><a href="{}?schedule={}">All its jobs</a></p>',
            reverse("admin:web_job_changelist"),
            obj.name,
        )
        ids = [fire.job_id for fire in fires if fire.job_id]
        jobs = dict(Job.objects.filter(id__in=ids).values_list("id", "status"))
        rows = html_rows(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    fire.fire_time.isoformat(sep=" ", timespec="seconds"),
                    fire.outcome,
                    job_link(fire.job_id, jobs.get(fire.job_id)) if fire.job_id else "—",
                    fire.detail,
                )
                for fire in fires
            ),
        )
        return html(
            '<table class="recent-runs"><thead><tr><th>fire time</th><th>outcome</th>'
            "<th>job</th><th>detail</th></tr></thead><tbody>{}</tbody></table>{}",
            rows,
            every,
        )

    def _times(self, obj: Any, n: int) -> list[datetime] | str:
        options = getattr(obj, "conveyor", None)
        expression = expression_of_task(obj, options.second if options else "0")
        tz = str(obj.crontab.timezone) if obj.crontab_id else "UTC"
        try:
            return schedule.next_fire_times(expression, tz, n)
        except ConveyorError as exc:
            return f"cannot be previewed: {exc}"

    # writes: all through ScheduleService, each audited

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if object_id is not None and (obj := self.get_object(request, object_id)) is not None:
            # The model's own name for a schedule leaves out the seconds field.
            subtitle = f"{obj.name}: {self.expression(obj)}"
            extra_context = {"subtitle": subtitle, **(extra_context or {})}
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ConveyorError as exc:  # the form checked first: a concurrent change
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.path)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            key: data[key]
            for key in ("timezone", "kwargs", "queue", "enabled", "misfire", "overlap")
        }
        fields.update(catch_up_limit=data["catch_up_limit"], description=data["description"])
        actor = audit.actor_of(request)
        service = ScheduleService()
        if change:
            before = describe(obj.name)
            after = service.update(
                obj.name, actor=actor, task=data["task"], cron=data["cron"], **fields
            )
            action = "schedule.update"
            if before["enabled"] != after["enabled"]:
                action = "schedule.enable" if after["enabled"] else "schedule.disable"
        else:
            before = None
            after = service.create(data["name"], data["task"], data["cron"], actor=actor, **fields)
            action = "schedule.create"
        fresh = PeriodicTask.objects.get(pk=after["id"])
        for field in ("id", "name", "crontab_id", "interval_id", "clocked_id", "solar_id"):
            setattr(obj, field, getattr(fresh, field))
        audit.record(request, action, f"schedule:{after['name']}", before, after)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing: the service saved everything."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        before = describe(obj.name)
        ScheduleService().delete(obj.name, actor=audit.actor_of(request))
        audit.record(request, "schedule.delete", f"schedule:{obj.name}", before, None)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    @label("Run selected schedules now")
    def run_now(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self._run(request, obj.name)

    @label("Enable selected schedules")
    def enable(self, request: HttpRequest, queryset: Any) -> None:
        self._toggle(request, queryset, True)

    @label("Disable selected schedules")
    def disable(self, request: HttpRequest, queryset: Any) -> None:
        self._toggle(request, queryset, False)

    def _toggle(self, request: HttpRequest, queryset: Any, on: bool) -> None:
        service = ScheduleService()
        for obj in queryset:
            before = describe(obj.name)
            if before["enabled"] == on:
                continue
            actor = audit.actor_of(request)
            after = service.enable(obj.name, actor) if on else service.disable(obj.name, actor)
            action = "schedule.enable" if on else "schedule.disable"
            audit.record(request, action, f"schedule:{obj.name}", before, after)
            self.message_user(request, f"{obj.name} {'enabled' if on else 'disabled'}")

    def _run(self, request: HttpRequest, name: str) -> None:
        try:
            fire = ScheduleService().trigger(name, actor=audit.actor_of(request))
        except ConveyorError as exc:
            self.message_user(request, f"{name} could not run: {exc}", messages.ERROR)
            return
        audit.record(request, "schedule.trigger", f"schedule:{name}", None, fire)
        job = f", job {fire['job_id']}" if fire["job_id"] else ""
        detail = f" ({fire['detail']})" if fire["detail"] else ""
        self.message_user(request, f"{name} ran now: {fire['outcome']}{job}{detail}")

    def get_urls(self) -> list[Any]:
        info = (self.opts.app_label, self.opts.model_name)
        run = path(
            "<path:object_id>/run/",
            self.admin_site.admin_view(self.run_view),
            name="{}_{}_run".format(*info),
        )
        return [run, *super().get_urls()]

    def run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: run the schedule now (its overlap policy applies)."""
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404(f"no schedule with id {object_id!r}")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        self._run(request, obj.name)
        return HttpResponseRedirect(
            reverse("admin:django_celery_beat_periodictask_change", args=[obj.pk])
        )


admin.site.register(PeriodicTask, ScheduleAdmin)
