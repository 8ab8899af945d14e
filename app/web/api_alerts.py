"""``/alerts``: the alerts monitors raised, open ones by default, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from app.services import alerts
from app.web.api_auth import needs
from app.web.api_errors import ApiError
from app.web.api_schemas import Text, errors

router = Router(tags=["alerts"])


class AlertOut(Schema):
    """One alert: a condition a monitor saw, counted while open."""

    id: int
    key: str = Field(description="names the condition; one open alert per key")
    severity: Literal["info", "warning", "critical"]
    subject: str
    detail: str
    first_seen_at: datetime
    last_seen_at: datetime
    count: int = Field(description="sightings while open, the first included")
    last_notified_at: datetime | None = Field(
        description="when a notification was last enqueued (none: no channel configured)"
    )
    resolved_at: datetime | None = Field(description="none while the alert is open")
    resolution: str | None = Field(description="what the resolver said")
    labels: dict[str, Any] | None


class AlertPage(Schema):
    """A page of alerts, newest first."""

    items: list[AlertOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class AlertFilter(Schema):
    """``GET /alerts`` state and paging."""

    state: Literal["open", "resolved", "all"] = Field("open", description="open by default")
    limit: int = Field(50, ge=1, le=500)
    cursor: Text | None = Field(None, max_length=200, description="next_cursor of a page")


@router.get("/alerts", response={200: AlertPage, **errors()}, **needs("read"))
def list_alerts(request: HttpRequest, query: Query[AlertFilter]) -> dict[str, Any]:
    """Alerts in a state (open, resolved or all), newest first."""
    try:
        rows, cursor = alerts.page(query.state, query.limit, query.cursor)
    except alerts.InvalidAlert as exc:
        raise ApiError(400, "invalid_cursor", str(exc), exc.argument) from None
    return {"items": [alert.as_json() for alert in rows], "next_cursor": cursor}
