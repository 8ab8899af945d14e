"""The operator console: Django's admin at ``/console/``, over the schedules and the ledger.

Schedules are django-celery-beat's ``PeriodicTask`` rows, but every console write
goes through :class:`~beat.service.ScheduleService` (the same checks as the CLI and
the API, and edit tracking). Jobs are read from the ledger and changed only through
:class:`~app.jobs.service.JobService`. Every operator action, logins included,
leaves an :class:`~app.web.models.AuditRecord` with the acting user.

Django has no type stubs here, and its decorators would make every method untyped:
:func:`~app.web.admin.display.label` names columns and actions instead.
"""

from __future__ import annotations

from django.contrib import admin

from app.web.admin import alerts, audit_trail, jobs, schedules, services
from app.web.admin.overview import console

__all__ = ["alerts", "audit_trail", "console", "jobs", "schedules", "services"]

admin.site.site_header = admin.site.site_title = "Conveyor"
admin.site.index_title = "Overview"
admin.site.site_url = None  # the web process has no public site to go back to
