"""The schedule form: ScheduleService's fields, checked by its rules before a save."""

from __future__ import annotations

from typing import Any

from django import forms
from django_celery_beat.models import PeriodicTask

from app import schedule
from app.errors import ConveyorError, InvalidPayload, PayloadTooLarge, UnknownHandler
from app.jobs.service import JobService
from beat.models import MisfirePolicy, OverlapPolicy
from beat.service import ScheduleService
from config.settings import QUEUES, get_settings


def describe(name: str) -> dict[str, Any]:
    """A schedule as :class:`ScheduleService` describes it."""
    return next(item for item in ScheduleService().list() if item["name"] == name)


class ScheduleForm(forms.ModelForm):
    """A schedule's fields as :class:`ScheduleService` takes them, checked by its rules."""

    name = forms.CharField(max_length=200)
    task = forms.ChoiceField(label="Task (registered handler)")
    cron = forms.CharField(
        label="Cron expression",
        max_length=200,
        help_text="Five fields, or six with seconds first (*/10 * * * * *); "
        "@hourly, @daily, @every 15m, @once.",
    )
    timezone = forms.CharField(
        label="Time zone", max_length=64, help_text="An IANA name, e.g. Europe/Berlin."
    )
    kwargs = forms.JSONField(
        label="Payload (JSON object)",
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    queue = forms.ChoiceField(
        choices=[("", "the task's own queue"), *((queue, queue) for queue in QUEUES)],
        required=False,
    )
    enabled = forms.BooleanField(required=False, initial=True)
    misfire = forms.ChoiceField(label="Misfire policy", choices=MisfirePolicy.choices)
    overlap = forms.ChoiceField(label="Overlap policy", choices=OverlapPolicy.choices)
    catch_up_limit = forms.IntegerField(
        min_value=1, max_value=1000, initial=10, help_text="Most runs one catch-up makes."
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = PeriodicTask
        fields = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "task" not in self.fields:  # a read-only view
            return
        handlers = sorted(JobService().handlers())
        self.fields["timezone"].initial = get_settings().timezone
        if self.instance.pk:
            info = describe(self.instance.name)
            keys = ("task", "cron", "timezone", "kwargs", "enabled", "misfire", "overlap")
            self.initial.update({key: info[key] for key in keys})
            self.initial.update(
                queue=info["queue"] or "",
                catch_up_limit=info["catch_up_limit"],
                description=info["description"],
            )
            if info["task"] not in handlers:
                handlers.append(info["task"])
        self.fields["task"].choices = [(name, name) for name in handlers]

    def clean(self) -> dict[str, Any]:
        """Check name, time zone, expression, task and payload as the service does."""
        data: dict[str, Any] = super().clean()
        name = data.get("name")
        if name and PeriodicTask.objects.filter(name=name).exclude(pk=self.instance.pk).exists():
            self.add_error("name", f"a schedule named {name!r} exists")
        tz = data.get("timezone")
        if tz:
            try:
                schedule.zone(tz)
            except ConveyorError as exc:
                self.add_error("timezone", str(exc))
                tz = None
        if data.get("cron") and tz:
            try:
                schedule.validate(data["cron"], tz)
            except ConveyorError as exc:
                self.add_error("cron", str(exc))
        payload = data.get("kwargs")
        if payload is not None and not isinstance(payload, dict):
            self.add_error("kwargs", "the payload must be a JSON object")
        elif data.get("task"):
            try:
                data["kwargs"] = JobService().validate(data["task"], payload or {})
            except UnknownHandler as exc:
                self.add_error("task", str(exc))
            except (InvalidPayload, PayloadTooLarge) as exc:
                self.add_error("kwargs", str(exc))
        return data

    def validate_unique(self) -> None:
        """Nothing: the name is checked in :meth:`clean`, and the model's own check wants
        a schedule row, which the service makes."""
