"""What Conveyor keeps beside django-celery-beat's tables (Django models, Django migrations).

``PeriodicTask`` and ``CrontabSchedule`` stay the schedule store, editable in the
console and by SQL; :class:`ScheduleOptions` adds what beat needs to fire them
right: the seconds field, the misfire and overlap policies, who edited the row
last, the cursor (the last fire time handled) and the error that disabled it.
"""

from __future__ import annotations

from django.db import models
from django_celery_beat.models import PeriodicTask


class MisfirePolicy(models.TextChoices):
    """What beat does with fires it missed (while down, or while the schedule was disabled)."""

    FIRE_ONCE = "fire_once", "one run now for any number of missed fires"
    SKIP = "skip", "no run; wait for the next slot"
    CATCH_UP = "catch_up", "one run per missed fire, each stamped with its time"


class OverlapPolicy(models.TextChoices):
    """What beat does when a fire comes while the previous run is still unfinished."""

    SKIP = "skip", "skip the fire (recorded)"
    QUEUE_ONE = "queue_one", "keep one run waiting until the previous one finishes"
    ALLOW = "allow", "start it anyway"


class ScheduleOptions(models.Model):
    """Conveyor's options of one periodic task."""

    periodic_task = models.OneToOneField(
        PeriodicTask, on_delete=models.CASCADE, primary_key=True, related_name="conveyor"
    )
    #: The cron seconds field ("0" for five-field expressions).
    second = models.CharField(max_length=64, default="0")
    misfire_policy = models.CharField(
        max_length=16, choices=MisfirePolicy.choices, default=MisfirePolicy.FIRE_ONCE
    )
    #: Most runs one catch-up makes (the latest missed fires).
    catch_up_limit = models.PositiveIntegerField(default=10)
    overlap_policy = models.CharField(
        max_length=16, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP
    )
    #: "code" for a schedule declared in beat/defaults.py, else "operator".
    managed_by = models.CharField(max_length=16, default="operator")
    #: Hash of the definition the declarative sync last wrote (edits by others differ).
    synced_hash = models.CharField(max_length=64, blank=True, default="")
    edited_by = models.CharField(max_length=200, blank=True, default="")
    edited_at = models.DateTimeField(null=True, blank=True)
    #: The last fire time beat handled; fires after it are due.
    cursor = models.DateTimeField(null=True, blank=True)
    #: The expression and time zone the cursor belongs to (an edit moves the cursor).
    seen_expression = models.CharField(max_length=400, blank=True, default="")
    #: Why beat disabled this schedule, if it did.
    error = models.TextField(blank=True, default="")
    #: The id ``JobService.enqueue`` returned for the recurring job this schedule is
    #: (None for a schedule made otherwise); ``update_schedule`` and ``delete`` take it.
    job_id = models.UUIDField(null=True, blank=True, unique=True)
    #: Fire once when the cluster's beats start (a new leader epoch, see BeatLease).
    run_on_startup = models.BooleanField(default=False, db_default=False)

    class Meta:
        db_table = "conveyor_schedule"
        verbose_name = "schedule options"
        verbose_name_plural = "schedule options"


class ScheduleFire(models.Model):
    """One fire of one schedule; unique per (schedule, fire time), so never two."""

    periodic_task_id = models.IntegerField()
    schedule_name = models.CharField(max_length=200)
    fire_time = models.DateTimeField()
    fired_at = models.DateTimeField()
    #: enqueued, skipped (overlap), waiting (queue_one), missed (misfire skip), triggered.
    outcome = models.CharField(max_length=16)
    job_id = models.UUIDField(null=True, blank=True)
    beat = models.CharField(max_length=200)
    detail = models.TextField(blank=True, default="")

    class Meta:
        db_table = "conveyor_schedule_fire"
        constraints = [
            models.UniqueConstraint(
                fields=["periodic_task_id", "fire_time"], name="ux_schedule_fire_once"
            )
        ]
        indexes = [models.Index(fields=["schedule_name", "-fire_time"], name="ix_fire_name_time")]


class BeatLease(models.Model):
    """The leader lease: one row; the holder fires, the other beats wait."""

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=200)
    acquired_at = models.DateTimeField()
    renewed_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    #: When the current run of holders began: a lease no one had held for a while is a
    #: new epoch (the cluster started); a handover within it keeps the epoch.
    epoch = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "conveyor_beat_lease"


class BeatInstance(models.Model):
    """Each beat process's last sign of life and last error (for health and the CLI)."""

    identity = models.CharField(max_length=200, primary_key=True)
    started_at = models.DateTimeField()
    last_tick_at = models.DateTimeField()
    leader = models.BooleanField(default=False)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "conveyor_beat_instance"
