"""``/audit`` and ``/tokens`` (``admin`` scope): the audit trail, and the API's own tokens."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from app.web import audit, tokens
from app.web.api_auth import ADMIN, needs
from app.web.api_errors import ApiError
from app.web.api_schemas import ScopeName, Text, errors

router = Router(tags=["admin"], auth=ADMIN)


class AuditOut(Schema):
    """One operator action."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    ip: str | None


class AuditPage(Schema):
    """A page of the audit trail, newest first."""

    items: list[AuditOut]
    next_cursor: str | None


class TokenIn(Schema):
    """A new API token."""

    name: Text = Field(min_length=1, max_length=100)
    scope: ScopeName = "read"
    days: int | None = Field(90, ge=1, le=3650, description="null: never expires")


class TokenOut(Schema):
    """An API token (never its secret)."""

    name: str
    prefix: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    active: bool


class TokenCreated(TokenOut):
    """A new token with its secret, shown this once."""

    secret: str


class AuditFilter(Schema):
    """``GET /audit`` filters (all apply) and paging."""

    actor: Text | None = Field(None, max_length=200, description="starts with, e.g. token:1a2b")
    action: Text | None = Field(None, max_length=64, description="e.g. schedule.update")
    target: Text | None = Field(None, max_length=300, description="starts with, e.g. job:")
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: Text | None = Field(None, max_length=200, description="next_cursor of a page")


def _cursor(at: datetime, record_id: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{record_id}".encode()).decode()


def _position(cursor: str) -> tuple[datetime, int]:
    try:
        at, record_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment = datetime.fromisoformat(at)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC), int(record_id)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400, "invalid_cursor", f"cursor {cursor!r} is not one this API returned", "cursor"
        ) from None


@router.get("/audit", response={200: AuditPage, **errors()}, **needs("admin"))
def audit_trail(request: HttpRequest, query: Query[AuditFilter]) -> dict[str, Any]:
    """Operator actions, newest first: who, when, what, before and after."""
    from app.web.models import AuditRecord

    records = AuditRecord.objects.order_by("-at", "-id")
    if query.actor:
        records = records.filter(actor__startswith=query.actor)
    if query.action:
        records = records.filter(action=query.action)
    if query.target:
        records = records.filter(target__startswith=query.target)
    if query.since:
        records = records.filter(at__gte=query.since)
    if query.until:
        records = records.filter(at__lt=query.until)
    if query.cursor:
        at, record_id = _position(query.cursor)
        records = records.filter(Q(at__lt=at) | Q(at=at, id__lt=record_id))
    page = list(records[: query.limit])
    cursor = _cursor(page[-1].at, page[-1].id) if len(page) == query.limit else None
    items = [
        {
            "id": r.id,
            "at": r.at,
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "before": r.before,
            "after": r.after,
            "ip": r.ip,
        }
        for r in page
    ]
    return {"items": items, "next_cursor": cursor}


def token_out(token: Any) -> dict[str, Any]:
    """A token as the API and the audit show it: never its secret or digest."""
    now = datetime.now(UTC)
    return {
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "last_used_at": token.last_used_at,
        "active": token.revoked_at is None and (token.expires_at is None or token.expires_at > now),
    }


@router.get("/tokens", response={200: list[TokenOut], **errors()}, **needs("admin"))
def list_tokens(request: HttpRequest) -> list[dict[str, Any]]:
    """Every token, newest first."""
    from app.web.models import ApiToken

    return [token_out(t) for t in ApiToken.objects.order_by("-created_at", "-id")]


@router.post("/tokens", response={201: TokenCreated, **errors()}, **needs("admin"))
def create_token(request: HttpRequest, body: TokenIn) -> tuple[int, dict[str, Any]]:
    """A new token; its secret is in this answer and nowhere else."""
    token, secret = tokens.create(body.name, body.scope, body.days)
    out = token_out(token)
    audit.record(request, "token.create", f"token:{token.prefix}", None, out)
    return 201, {**out, "secret": secret}


@router.delete("/tokens/{prefix}", response={200: TokenOut, **errors(404)}, **needs("admin"))
def revoke_token(request: HttpRequest, prefix: Text) -> dict[str, Any]:
    """Revoke a token by its prefix; it is refused from the next request on."""
    from app.web.models import ApiToken

    token = ApiToken.objects.filter(prefix=prefix).first()
    if token is None:
        raise ApiError(404, "not_found", f"no token with prefix {prefix!r}", "prefix")
    before = token_out(token)
    if token.revoked_at is None:
        tokens.revoke(token)
    after = token_out(token)
    audit.record(request, "token.revoke", f"token:{prefix}", before, after)
    return after
