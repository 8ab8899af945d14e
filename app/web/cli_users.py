"""``python -m app users …``: console accounts (Django's auth; each one is an administrator)."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from pathlib import Path
from typing import Any

#: The account ``run`` creates when the database has none.
FIRST_USER = "admin"


def add_user_commands(sub: Any) -> None:
    """Register ``users`` on the top-level parser."""
    users = sub.add_parser("users", help="console users")
    actions = users.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a console user (staff and superuser)")
    create.add_argument("name")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting",
    )
    actions.add_parser("list", help="every console user")
    first = actions.add_parser(
        "first", help=f"create {FIRST_USER!r} with a random password if there is no user"
    )
    first.add_argument("password_file", type=Path, help="where the password is written (0600)")
    users.set_defaults(func=cmd_users)


def cmd_users(args: argparse.Namespace) -> int:
    """Run one ``users`` action; a refused password or name exits 2, naming why."""
    from beat.service import ensure_django

    ensure_django()
    if args.action == "list":
        return list_users()
    if args.action == "first":
        created = first_user(args.password_file)
        print(f"created {FIRST_USER!r}" if created else "a console user exists")
        return 0
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else _prompt()
    try:
        create_user(args.name, password)
    except ValueError as exc:
        print(f"users create: {exc}", file=sys.stderr)
        return 2
    print(f"created console user {args.name!r}")
    return 0


def create_user(name: str, password: str) -> None:
    """Create a staff superuser; ``ValueError`` naming the reason if refused."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    from app.web import audit

    users = get_user_model()
    if not name.strip():
        raise ValueError("a user needs a name")
    if users.objects.filter(username=name).exists():
        raise ValueError(f"a user named {name!r} exists")
    try:
        validate_password(password, users(username=name))
    except ValidationError as exc:
        raise ValueError("password refused: " + " ".join(exc.messages)) from None
    users.objects.create_superuser(name, password=password)
    audit.record(None, "user.create", f"user:{name}", actor=f"cli:{getpass.getuser()}")


def first_user(password_file: Path) -> bool:
    """With no user at all, create :data:`FIRST_USER` and write its random password to
    ``password_file`` (readable by its owner alone); True if created."""
    from django.contrib.auth import get_user_model

    from app.web import audit

    users = get_user_model()
    if users.objects.exists():
        return False
    password = secrets.token_urlsafe(18)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    os.chmod(password_file, 0o600)  # an older file may have kept wider permissions
    users.objects.create_superuser(FIRST_USER, password=password)
    audit.record(None, "user.create", f"user:{FIRST_USER}", actor="run")
    return True


def list_users() -> int:
    """Print every user: name, role, last login."""
    from django.contrib.auth import get_user_model

    for user in get_user_model().objects.order_by("username"):
        role = "admin" if user.is_superuser else "staff" if user.is_staff else "no console"
        state = "" if user.is_active else " (inactive)"
        last = user.last_login.isoformat(timespec="seconds") if user.last_login else "never"
        print(f"{user.username:<24} {role:<10} last login {last}{state}")
    return 0


def _prompt() -> str:
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        print("users create: the passwords differ", file=sys.stderr)
        raise SystemExit(2)
    return password
