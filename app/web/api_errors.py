"""One JSON shape for every error of the API, and the mapping of Conveyor's errors onto it.

Every 4xx reads ``{"error": {"status", "code", "message", "field", "details"}}``:
``field`` names the input that was wrong (``payload.to``, ``cron``, ``cursor``) and
``details`` lists each problem when there are several. Errors that input can cause
are all mapped here, so no input yields a 5xx.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError as DjangoDataError
from django.db import IntegrityError as DjangoIntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from sqlalchemy.exc import DataError as SqlDataError
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from app.errors import (
    BrokerFull,
    BrokerUnavailable,
    ConveyorError,
    GateUnavailable,
    InvalidOption,
    InvalidPayload,
    InvalidSchedule,
    InvalidScheduleField,
    InvalidTransition,
    JobNameTaken,
    JobNotFound,
    PayloadTooLarge,
    ScheduleNotFound,
    UnknownHandler,
)

logger = logging.getLogger(__name__)

#: The ``code`` of an error that carries no code of its own, by status.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered as JSON with its status, code, message and the field at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.details = details or []
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        error = {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "field": self.field,
            "details": self.details,
            **self.extra,
        }
        return {"error": error}


def from_conveyor(exc: Exception, prefix: str = "payload", schedule: str = "schedule") -> ApiError:
    """The :class:`ApiError` for one of Conveyor's errors.

    ``prefix`` is the name payload paths are given under (``kwargs`` for a schedule),
    ``schedule`` the field an unusable schedule is reported on (``cron`` for a schedule).
    """
    if isinstance(exc, UnknownHandler):
        field = "handler" if prefix == "payload" else "task"
        return ApiError(422, "unknown_handler", str(exc), field, known=exc.known)
    if isinstance(exc, InvalidPayload):
        details = [
            {"field": _join(prefix, path), "reason": reason} for path, reason in exc.problems
        ]
        field = details[0]["field"] if details else prefix
        return ApiError(422, "invalid_payload", str(exc), field, details)
    if isinstance(exc, PayloadTooLarge):
        return ApiError(413, "payload_too_large", str(exc), prefix, limit=exc.limit, size=exc.size)
    if isinstance(exc, InvalidScheduleField):
        return ApiError(422, "invalid_schedule", str(exc), exc.field)
    if isinstance(exc, InvalidOption):
        return ApiError(422, "invalid_value", str(exc), exc.field)
    if isinstance(exc, InvalidSchedule):
        return ApiError(422, "invalid_schedule", str(exc), schedule)
    if isinstance(exc, JobNotFound):
        return ApiError(404, "not_found", str(exc), "job_id")
    if isinstance(exc, ScheduleNotFound):
        return ApiError(404, "not_found", str(exc), "schedule")
    if isinstance(exc, InvalidTransition):
        return ApiError(409, "invalid_transition", str(exc))
    if isinstance(exc, JobNameTaken):
        return ApiError(409, "conflict", str(exc), "job_id")
    if isinstance(exc, BrokerFull):
        return ApiError(503, "broker_full", str(exc))
    if isinstance(exc, BrokerUnavailable):
        return ApiError(503, "broker_unavailable", str(exc))
    if isinstance(exc, GateUnavailable):
        return ApiError(503, "gate_unavailable", str(exc))
    return ApiError(422, "invalid_value", str(exc))


@contextlib.contextmanager
def fields(prefix: str = "payload", schedule: str = "schedule") -> Iterator[None]:
    """Report Conveyor's errors raised inside under these field names."""
    try:
        yield
    except ApiError:
        raise
    except ConveyorError as exc:
        raise from_conveyor(exc, prefix, schedule) from None


def _join(prefix: str, path: str) -> str:
    return prefix if path in ("", "payload") else f"{prefix}.{path}"


def unauthorized() -> ApiError:
    """The one 401: it never says whether the token was missing, wrong, expired or revoked."""
    return ApiError(
        401, "unauthorized", "a valid API token is required (Authorization: Bearer <token>)"
    )


def respond(api: NinjaAPI, request: HttpRequest, error: ApiError) -> HttpResponse:
    """The response for ``error``."""
    response = api.create_response(request, error.body(), status=error.status)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="conveyor"'
    return response


def _validation(exc: ValidationError) -> ApiError:
    details = []
    for problem in exc.errors:
        where, *path = [str(part) for part in problem.get("loc", ())] or ["body"]
        if where == "body" and len(path) > 1:
            path = path[1:]  # the name of the body parameter, not part of the document
        details.append(
            {
                "field": ".".join(path) or where,
                "in": where,
                "reason": str(problem.get("msg")).removeprefix("Value error, "),
            }
        )
    first = details[0] if details else {"field": None, "reason": "invalid request"}
    message = f"{first['field']}: {first['reason']}" if first["field"] else str(first["reason"])
    return ApiError(422, "invalid_request", message, first["field"], details)


def install(api: NinjaAPI) -> None:
    """Answer every error ``api`` meets in the one shape."""

    def handle(exc_type: type[Exception], convert: Any) -> None:
        def handler(request: HttpRequest, exc: Any) -> HttpResponse:
            return respond(api, request, convert(exc))

        api.add_exception_handler(exc_type, handler)

    handle(ApiError, lambda exc: exc)
    handle(ValidationError, _validation)
    handle(AuthenticationError, lambda exc: unauthorized())
    handle(
        HttpError,
        lambda exc: ApiError(exc.status_code, CODES.get(exc.status_code, "error"), exc.message),
    )
    handle(Http404, lambda exc: ApiError(404, "not_found", str(exc) or "not found"))
    handle(ConveyorError, from_conveyor)
    handle(
        RequestDataTooBig,
        lambda exc: ApiError(413, "payload_too_large", "the request body is too large", "body"),
    )
    # The database refuses a value the checks let through (out of range, too long):
    # that is the input's fault, so it is a 422, never a 500.
    for data_error in (DjangoDataError, SqlDataError):
        handle(data_error, lambda exc: ApiError(422, "invalid_value", _first_line(exc)))
    # A uniqueness the database keeps (an active job's name, a schedule's name) clashed.
    for integrity_error in (DjangoIntegrityError, SqlIntegrityError):
        handle(integrity_error, lambda exc: ApiError(409, "conflict", _first_line(exc)))
    handle(ValueError, lambda exc: ApiError(422, "invalid_value", str(exc)))
    handle(OverflowError, lambda exc: ApiError(422, "invalid_value", f"value out of range: {exc}"))
    handle(Exception, _unexpected)


def _first_line(exc: Exception) -> str:
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc
    return f"the database refused it: {str(cause).strip().splitlines()[0]}"


def _unexpected(exc: Exception) -> ApiError:
    logger.error("API request failed", exc_info=exc)
    return ApiError(500, "internal_error", "the server failed; the error was logged")
