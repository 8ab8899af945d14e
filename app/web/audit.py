"""The audit trail: every operator action, with who, when, what and before/after."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON (datetimes, UUIDs and the like as strings)."""
    return json.loads(json.dumps(value, default=str))


def actor_of(request: HttpRequest | None) -> str:
    """Who acts in ``request``: its API token or its logged-in user."""
    if request is None:
        return "system"
    token = getattr(request, "api_token", None)
    if token is not None:
        return f"token:{token.prefix} ({token.name})"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.get_username()}"
    return "anonymous"


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address as the web process saw it."""
    return None if request is None else request.META.get("REMOTE_ADDR") or None


def record(
    request: HttpRequest | None,
    action: str,
    target: str = "",
    before: Any = None,
    after: Any = None,
    actor: str | None = None,
) -> None:
    """Write one audit record."""
    from app.web.models import AuditRecord

    AuditRecord.objects.create(
        actor=actor or actor_of(request),
        action=action,
        target=target[:300],
        before=jsonable(before),
        after=jsonable(after),
        ip=client_ip(request),
    )
