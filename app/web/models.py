"""Django models of the web process.

``ApiToken`` and ``AuditRecord`` are Django's own tables. ``Job`` and ``JobEvent``
are read-only views of the ledger's tables (created by Alembic, never by Django),
so the console can list and filter them with the admin; ``Alert`` is one of the
``alerts`` table, and ``Service`` one of the services runtime's ``services`` table.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models


class Scope(models.TextChoices):
    """What a token may do; each scope includes the ones before it."""

    READ = "read", "read: GET every resource"
    WRITE = "write", "write: enqueue, cancel, requeue, edit schedules"
    ADMIN = "admin", "admin: tokens and the audit trail"


SCOPE_ORDER = (Scope.READ, Scope.WRITE, Scope.ADMIN)


class ApiToken(models.Model):
    """An API token, stored as a SHA-256 digest; the secret is shown once, at creation."""

    name = models.CharField(max_length=100)
    #: The first characters of the token, to find it and to show it (not secret).
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "conveyor_api_token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"


class AuditQuerySet(models.QuerySet):
    """The audit trail's writes beyond a record's creation (:func:`app.web.audit.record`)."""

    def purge(self, cutoff: datetime, batch: int) -> int:
        """Delete up to ``batch`` records made before ``cutoff``, oldest first; how many
        went (one ``DELETE … WHERE id IN (SELECT … LIMIT)``, a short transaction)."""
        oldest = self.filter(at__lt=cutoff).order_by("at", "id").values("id")[:batch]
        deleted, _ = self.model.objects.filter(id__in=oldest).delete()
        return int(deleted)


class AuditRecord(models.Model):
    """One operator action: who, when, what, and the values before and after.

    Kept ``web.audit_retention_days``; ``maintenance.purge_audit_records``
    (:mod:`app.web.housekeeping`) deletes older ones through :meth:`AuditQuerySet.purge`.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    #: ``user:<name>``, ``token:<prefix> (<name>)``, ``cli:<user>``.
    actor = models.CharField(max_length=200, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    #: What was acted on: ``schedule:<name>``, ``job:<id>``, ``token:<prefix>``, a filter.
    target = models.CharField(max_length=300, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        db_table = "conveyor_audit"
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


class Job(models.Model):
    """The ledger's ``jobs`` table, read by the console (Alembic owns it)."""

    id = models.UUIDField(primary_key=True)
    handler = models.CharField(max_length=200)
    job_name = models.CharField(max_length=200, null=True)
    queue = models.CharField(max_length=100)
    payload = models.JSONField()
    metadata = models.JSONField()
    schedule = models.TextField(null=True)
    status = models.CharField(max_length=20)
    status_at = models.DateTimeField()
    attempts = models.IntegerField()
    deliveries = models.IntegerField()
    last_error = models.TextField(null=True)
    traceback = models.TextField(null=True)
    worker = models.CharField(max_length=200, null=True)
    result = models.JSONField(null=True)
    created_at = models.DateTimeField()
    enqueued_at = models.DateTimeField(null=True)
    due_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    progress = models.SmallIntegerField(null=True)
    progress_message = models.TextField(null=True)
    progress_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "jobs"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.handler} {self.id}"


class JobEvent(models.Model):
    """The ledger's ``job_events`` table (Alembic owns it)."""

    id = models.BigIntegerField(primary_key=True)
    job = models.ForeignKey(
        Job, on_delete=models.DO_NOTHING, db_column="job_id", db_constraint=False
    )
    from_status = models.CharField(max_length=20, null=True)
    to_status = models.CharField(max_length=20)
    at = models.DateTimeField()
    attempt = models.IntegerField()
    worker = models.CharField(max_length=200, null=True)
    detail = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "job_events"
        ordering = ("at", "id")


class Alert(models.Model):
    """The ``alerts`` table (Alembic owns it; every write is app.services.alerts')."""

    id = models.BigIntegerField(primary_key=True)
    key = models.CharField(max_length=300)
    severity = models.CharField(max_length=20)
    subject = models.CharField(max_length=300)
    detail = models.TextField()
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    count = models.IntegerField()
    last_notified_at = models.DateTimeField(null=True)
    resolved_at = models.DateTimeField(null=True)
    resolution = models.TextField(null=True)
    labels = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "alerts"
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.severity} {self.key}"


class Service(models.Model):
    """The ``services`` table: one service on one host (Alembic owns it; every write is
    app.services.store's)."""

    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    host = models.CharField(max_length=255)
    mode = models.CharField(max_length=20)
    state = models.CharField(max_length=20)
    pid = models.IntegerField(null=True)
    #: The writing process as a lease holder (host:pid:tag).
    identity = models.CharField(max_length=200, null=True)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    last_success_at = models.DateTimeField(null=True)
    last_error = models.TextField(null=True)
    last_error_at = models.DateTimeField(null=True)
    consecutive_errors = models.IntegerField()
    items_processed = models.BigIntegerField()
    detail = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "services"
        ordering = ("name", "host")

    def __str__(self) -> str:
        return f"{self.name}@{self.host}"
