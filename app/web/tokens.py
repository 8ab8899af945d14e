"""API tokens: created with a secret shown once, stored hashed, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from app.web.models import SCOPE_ORDER, ApiToken, Scope

PREFIX = "cvy_"


def digest(secret: str) -> str:
    """SHA-256 of a token (tokens are 256-bit random, so a fast hash is enough)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    name: str, scope: str = "read", days: int | None = 90, created_by: Any = None
) -> tuple[ApiToken, str]:
    """A new token and its secret (the only time the secret exists in clear)."""
    if scope not in Scope.values:
        raise ValueError(f"scope {scope!r} is not one of {', '.join(Scope.values)}")
    prefix = secrets.token_hex(4)
    secret = f"{PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        name=name,
        prefix=prefix,
        digest=digest(secret),
        scope=scope,
        created_by=created_by,
        expires_at=None if days is None else datetime.now(UTC) + timedelta(days=days),
    )
    return token, secret


def authenticate(secret: str) -> Any:
    """The live :class:`ApiToken` ``secret`` stands for; None if unknown, wrong, expired
    or revoked."""
    if not secret.startswith(PREFIX) or "_" not in secret[len(PREFIX) :]:
        return None
    prefix = secret[len(PREFIX) :].split("_", 1)[0]
    token = ApiToken.objects.filter(prefix=prefix).first()
    # Compare even when no token has this prefix, so timing tells nothing.
    expected = token.digest if token is not None else digest("no such token")
    if not hmac.compare_digest(expected, digest(secret)) or token is None:
        return None
    now = datetime.now(UTC)
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def allows(token: ApiToken, needed: str) -> bool:
    """True when ``token``'s scope includes ``needed``."""
    return SCOPE_ORDER.index(Scope(token.scope)) >= SCOPE_ORDER.index(Scope(needed))


def revoke(token: ApiToken) -> None:
    """Revoke ``token`` now; it is refused from the next request on."""
    token.revoked_at = datetime.now(UTC)
    token.save(update_fields=["revoked_at"])
