"""``python -m app tokens create|list|revoke``: API tokens from a shell, each audited."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import Any

#: The scopes of :class:`app.web.models.Scope` (not imported: Django is not set up yet).
SCOPES = ("read", "write", "admin")


def add_token_commands(sub: Any) -> None:
    """Register ``tokens`` on the top-level parser."""
    parser = sub.add_parser("tokens", help="create, list and revoke API tokens")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new token; its secret is printed once")
    create.add_argument("name")
    create.add_argument("--scope", choices=SCOPES, default="read")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--days", type=int, default=90, help="days until it expires (90)")
    expiry.add_argument("--no-expiry", action="store_true", help="it never expires")
    listing = actions.add_parser("list", help="every token (never its secret)")
    listing.add_argument("--all", action="store_true", help="revoked and expired ones too")
    revoke = actions.add_parser("revoke", help="revoke a token by its prefix")
    revoke.add_argument("prefix")
    parser.set_defaults(func=cmd_tokens)


def cmd_tokens(args: argparse.Namespace) -> int:
    """``tokens create|list|revoke``."""
    from beat.service import ensure_django

    ensure_django()
    from app.web import audit, tokens
    from app.web.models import ApiToken

    actor = f"cli:{getpass.getuser()}"
    if args.action == "create":
        if not args.no_expiry and not 1 <= args.days <= 3650:
            print("error: --days must be from 1 to 3650", file=sys.stderr)
            return 2
        days = None if args.no_expiry else args.days
        token, secret = tokens.create(args.name, args.scope, days)
        audit.record(None, "token.create", f"token:{token.prefix}", None, _plain(token), actor)
        print(secret)
        expires = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if days else "never expires"
        print(
            f"token {token.prefix} ({token.name}, {token.scope}) {expires}; "
            "the secret above is shown only now",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        now = datetime.now(UTC)
        for token in ApiToken.objects.order_by("-created_at", "-id"):
            state = _state(token, now)
            if state != "active" and not args.all:
                continue
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            expires = f"{token.expires_at:%Y-%m-%d}" if token.expires_at else "never"
            print(
                f"{token.prefix}  {token.scope:<5}  {state:<7}  expires {expires:<10}  "
                f"used {used:<16}  {token.name}"
            )
        return 0
    found = ApiToken.objects.filter(prefix=args.prefix).first()
    if found is None:
        print(f"error: no token with prefix {args.prefix!r}", file=sys.stderr)
        return 2
    before = _plain(found)
    if found.revoked_at is None:
        tokens.revoke(found)
    audit.record(None, "token.revoke", f"token:{found.prefix}", before, _plain(found), actor)
    print(f"revoked {found.prefix} ({found.name})")
    return 0


def _state(token: Any, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def _plain(token: Any) -> dict[str, Any]:
    """A token as the audit keeps it: never its secret or digest."""
    return {
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
    }
