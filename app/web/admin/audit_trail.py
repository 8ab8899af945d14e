"""The audit trail in the console, and the audit records of logins."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib import admin
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest

from app.web import audit
from app.web.admin.display import ReadOnlyAdmin, label, pre
from app.web.models import AuditRecord


class AuditAdmin(ReadOnlyAdmin):
    """Every operator action: who, when, what, before and after. Read-only."""

    list_display = ("at", "actor", "action", "target", "ip")
    list_filter = ("action", "actor", ("at", admin.DateFieldListFilter))
    search_fields = ("actor", "action", "target")
    date_hierarchy = "at"
    fields = ("at", "actor", "action", "target", "ip", "before_json", "after_json")
    readonly_fields = fields
    list_per_page = 100

    @label("before")
    def before_json(self, obj: Any) -> str:
        return pre(obj.before)

    @label("after")
    def after_json(self, obj: Any) -> str:
        return pre(obj.after)


admin.site.register(AuditRecord, AuditAdmin)


# logins ----------------------------------------------------------------------------


def _logged_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    name = f"user:{user.get_username()}"
    audit.record(request, "login", name, actor=name)


def _login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = credentials.get("username", "")
    audit.record(request, "login.fail", f"user:{username}", actor="anonymous")


def _locked_out(sender: Any, request: HttpRequest, username: str, **kwargs: Any) -> None:
    audit.record(request, "login.lockout", f"user:{username}", actor="anonymous")


user_logged_in.connect(_logged_in, dispatch_uid="conveyor-audit-login")
user_login_failed.connect(_login_failed, dispatch_uid="conveyor-audit-login-failed")
user_locked_out.connect(_locked_out, dispatch_uid="conveyor-audit-locked-out")
