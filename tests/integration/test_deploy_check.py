"""The production profile passes Django's deployment checklist (``check --deploy``)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.services import ROOT


def deploy_check(**variables: str) -> subprocess.CompletedProcess[str]:
    """``python -m django check --deploy --fail-level WARNING`` with only ``variables`` set."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONVEYOR_")}
    env |= {"DJANGO_SETTINGS_MODULE": "config.django_settings", **variables}
    return subprocess.run(
        [sys.executable, "-m", "django", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_profile_passes_check_deploy() -> None:
    done = deploy_check(
        CONVEYOR_PROFILE="production",
        CONVEYOR_WEB__SECRET_KEY=secrets.token_urlsafe(45)[:60],
        CONVEYOR_WEB__ALLOWED_HOSTS='["conveyor.example.com"]',
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_development_profile_fails_check_deploy() -> None:
    """The check is not vacuous: the laptop profile (DEBUG on, no HTTPS) fails it."""
    done = deploy_check(CONVEYOR_PROFILE="development")
    assert done.returncode != 0
    assert "security.W018" in done.stderr  # DEBUG
    assert "security.W004" in done.stderr  # no HSTS
