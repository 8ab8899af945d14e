"""``python -m app users …`` against a database of its own (no user in it at first)."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.workers import ROOT
from tests.servers import database_url

pytestmark = pytest.mark.acceptance


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    """The environment of a CLI on a freshly migrated, empty database."""
    admin = plain(database_url()).rsplit("/", 1)[0] + "/postgres"
    name = f"conveyor_users_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url().rsplit("/", 1)[0] + f"/{name}"
    environment = {**os.environ, "CONVEYOR_DATABASE__URL": url}
    try:
        cli(environment, "migrate")
        yield environment
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def query(env: dict[str, str], sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(plain(env["CONVEYOR_DATABASE__URL"])) as conn:
        return conn.execute(sql).fetchall()


def test_first_user_gets_a_random_password_in_a_private_file_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    from django.contrib.auth.hashers import check_password

    from beat.service import ensure_django

    ensure_django()
    password_file = tmp_path / "var" / "console-password.txt"
    made = cli(env, "users", "first", str(password_file))
    assert made.returncode == 0 and "created 'admin'" in made.stdout, made.stderr
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 20
    [(username, hashed, staff, superuser)] = query(
        env, "SELECT username, password, is_staff, is_superuser FROM auth_user"
    )
    assert (username, staff, superuser) == ("admin", True, True)
    assert check_password(password, hashed)

    again = cli(env, "users", "first", str(password_file))
    assert again.returncode == 0 and "a console user exists" in again.stdout
    assert password_file.read_text().strip() == password
    assert query(env, "SELECT actor, action, target FROM conveyor_audit") == [
        ("run", "user.create", "user:admin")
    ]


def test_users_create_checks_the_password_and_users_list_shows_them(
    env: dict[str, str],
) -> None:
    weak = cli(env, "users", "create", "ops", "--password-stdin", stdin="short\n")
    assert weak.returncode == 2
    assert "password refused" in weak.stderr and "too short" in weak.stderr
    made = cli(env, "users", "create", "ops", "--password-stdin", stdin="a-long-passphrase-77\n")
    assert made.returncode == 0, made.stderr
    twice = cli(env, "users", "create", "ops", "--password-stdin", stdin="a-long-passphrase-77\n")
    assert twice.returncode == 2 and "exists" in twice.stderr
    listed = cli(env, "users", "list")
    line = next(line for line in listed.stdout.splitlines() if line.startswith("ops "))
    assert "admin" in line and "last login never" in line
    audit = query(env, "SELECT actor, target FROM conveyor_audit WHERE action = 'user.create'")
    assert (f"cli:{getpass.getuser()}", "user:ops") in audit
