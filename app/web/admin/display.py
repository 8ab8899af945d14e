"""Small helpers for the console's pages: typed HTML formatting and labels."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from app.jobs.models import JobStatus

STATES = tuple(status.value for status in JobStatus)
F = TypeVar("F", bound=Callable[..., Any])


def html(template: str, *args: Any) -> str:
    """:func:`format_html`, typed (the result stays marked safe)."""
    return str(format_html(template, *args))


def html_rows(template: str, rows: Iterable[Iterable[Any]]) -> str:
    """:func:`format_html_join` of ``rows``, typed."""
    return str(format_html_join("", template, rows))


def label(text: str) -> Callable[[F], F]:
    """Name a column, read-only field or action in the console."""

    def mark(function: F) -> F:
        function.short_description = text  # type: ignore[attr-defined]
        return function

    return mark


def job_link(job_id: Any, status: str | None) -> str:
    url = reverse("admin:web_job_change", args=[job_id])
    return html('<a href="{}">{}</a> {}', url, str(job_id)[:8], status or "")


def pre(value: Any) -> str:
    if value is None or value == "":
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return html("<pre>{}</pre>", text)


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin that shows rows and never adds, edits or deletes them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
