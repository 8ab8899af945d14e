"""The management API under ``/api/v1/`` (django-ninja), OpenAPI at ``/api/v1/openapi.json``.

Every route needs a token (``Authorization: Bearer <token>``): reads the ``read``
scope, writes ``write``, ``/audit`` and ``/tokens`` ``admin`` (each operation names
its scope as ``x-scope``). The OpenAPI document and its page at ``/api/v1/docs``
take a ``read`` token or a console login. Every error is JSON in one shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, re_path
from ninja import NinjaAPI

from app.web import api_errors
from app.web.api_admin import router as admin_router
from app.web.api_alerts import router as alerts_router
from app.web.api_auth import READ, require_docs_access
from app.web.api_catalog import router as catalog_router
from app.web.api_errors import ApiError
from app.web.api_jobs import router as jobs_router
from app.web.api_operations import router as operations_router
from app.web.api_schedules import router as schedules_router
from app.web.api_services import router as services_router


class ConveyorApi(NinjaAPI):
    """A NinjaAPI whose 404 and 405 answers are JSON too, and whose docs need a login
    or a ``read`` token."""

    def __init__(self, **options: Any) -> None:
        super().__init__(docs_decorator=self.guard_docs, **options)

    def guard_docs(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        """Serve the OpenAPI document and its page to a console user or a ``read`` token."""

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                require_docs_access(request)
            except ApiError as exc:
                return api_errors.respond(self, request, exc)
            return view(request, *args, **kwargs)

        return guarded

    @property
    def urls(self) -> tuple[list[URLResolver | URLPattern], str, str]:
        """The routes, each answering 405 in the error shape, then a JSON 404 for the rest."""
        patterns, app_name, namespace = super().urls
        wrapped: list[URLResolver | URLPattern] = [
            URLPattern(p.pattern, self._json_405(p.callback), p.default_args, p.name)
            if isinstance(p, URLPattern)
            else p
            for p in patterns
        ]
        wrapped.append(re_path(r"^.*$", self._not_found))
        return wrapped, app_name, namespace

    def _json_405(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response = view(request, *args, **kwargs)
            if response.status_code != 405 or "json" in response.get("Content-Type", ""):
                return response
            allowed = response.get("Allow", "")
            error = ApiError(
                405, "method_not_allowed", f"{request.method} is not allowed here; use {allowed}"
            )
            out = api_errors.respond(self, request, error)
            out["Allow"] = allowed
            return out

        return answer

    def _not_found(self, request: HttpRequest) -> HttpResponse:
        error = ApiError(404, "not_found", f"no API route at {request.path}")
        return api_errors.respond(self, request, error)


api = ConveyorApi(
    title="Conveyor",
    version="1",
    description=__doc__,
    urls_namespace="api-v1",
    auth=READ,
)
api_errors.install(api)
for router in (
    jobs_router,
    schedules_router,
    operations_router,
    services_router,
    alerts_router,
    catalog_router,
    admin_router,
):
    api.add_router("/", router)
