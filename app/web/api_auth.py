"""Bearer tokens with scopes for the API, and the request gate that runs before parsing.

A route needs a scope: reads ``read``, writes ``write``, tokens and the audit trail
``admin``. No token, or one that is wrong, expired or revoked, gets the same 401;
a live token without the scope gets 403. The gate also refuses a body larger
than the payload limit allows (413) before anything reads it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from app.web import tokens
from app.web.api_errors import ApiError, unauthorized
from config.settings import get_settings

#: Room beside the payload for the rest of a request body (metadata, names, schedule).
BODY_MARGIN_BYTES = 64 * 1024


def body_limit() -> int:
    """The largest request body the API reads."""
    return get_settings().ledger.max_payload_bytes + BODY_MARGIN_BYTES


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>`` with at least ``scope``."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != self.openapi_scheme or not secret.strip():
            raise unauthorized()
        return self.authenticate(request, secret.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        """The live token, on ``request.api_token``; 401, 403 or 413 otherwise."""
        found = tokens.authenticate(token)
        if found is None:
            raise unauthorized()
        if not tokens.allows(found, self.scope):
            raise ApiError(
                403,
                "forbidden",
                f"this route needs a token with the {self.scope!r} scope; "
                f"this token has {found.scope!r}",
            )
        request.api_token = found
        _check_length(request)
        return found


def _check_length(request: HttpRequest) -> None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "bad_request", "Content-Length is not a number", "body") from None
    if length > body_limit():
        raise ApiError(
            413,
            "payload_too_large",
            f"the request body is {length} bytes, over the limit of {body_limit()} bytes",
            "body",
            limit=body_limit(),
            size=length,
        )


READ = TokenAuth("read")
WRITE = TokenAuth("write")
ADMIN = TokenAuth("admin")
AUTH = {"read": READ, "write": WRITE, "admin": ADMIN}


def needs(scope: str) -> dict[str, Any]:
    """Route options for ``scope``: the check, and ``x-scope`` naming it in the OpenAPI
    document."""
    return {"auth": AUTH[scope], "openapi_extra": {"x-scope": scope}}


def require_docs_access(request: HttpRequest) -> None:
    """Let a console user or a ``read`` token see the OpenAPI document; 401 or 403 otherwise."""
    user = getattr(request, "user", None)
    if not (user is not None and user.is_authenticated and user.is_staff):
        READ(request)
