"""A live system for the console's browser tests: web, worker, beat and Flower as real
processes on the run's Redis and PostgreSQL, and Debian's chromium driven by Playwright.

Django's ORM refuses to run while Playwright's event loop lives in the thread, so
everything the tests set up through Django happens before the browser starts, and
the tests read the audit trail with SQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from sqlalchemy import text

from app.db import engine
from app.jobs import statistics
from tests import servers
from tests.acceptance import probe_tasks
from tests.acceptance.workers import ROOT, Beat, Flower, Web, Worker
from tests.integration.test_schedule_service import empty_schedules
from tests.servers import purge_queues

ARTIFACTS = ROOT / "var" / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OPERATOR = ("operator", "console-operator-pw-1")
#: A user the throttling test locks out (only its name, from this address).
MALLORY = ("mallory", "mallory-right-pw-2")
FLOWER_AUTH = ("flower", "flower-pw-3")


def pytest_configure(config: pytest.Config) -> None:
    """Provision the servers (once per run, whichever tier asks first)."""
    # pytest calls this as it imports this file, before it collects the tier's modules.
    servers.provision(config)


@dataclass
class Console:
    """The running system the browser talks to."""

    web: Web
    worker: Worker
    beat: Beat
    flower: Flower

    @property
    def url(self) -> str:
        return f"{self.web.url}/console/"


def reset_state() -> None:
    """Empty ledger, schedules, probe effects and queues; the two console users exist."""
    from app.celery import app
    from beat.service import ensure_django

    with probe_tasks.connect() as conn:
        conn.execute(probe_tasks.DDL)
        conn.execute("TRUNCATE probe_effects, probe_flags")
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_events, workers, conveyor_audit"))
    statistics.cache().delete(statistics.CACHE_KEY)  # the front page would count from it
    empty_schedules()
    purge_queues(app)
    ensure_django()
    from django.contrib.auth.models import User

    for name, password in (OPERATOR, MALLORY):
        if not User.objects.filter(username=name).exists():
            User.objects.create_superuser(name, password=password)
    from django.db import connections

    connections.close_all()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """Web, worker, beat and Flower, started together; stopped after the module."""
    reset_state()
    broker = os.environ["CONVEYOR_BROKER__URL"]
    flower = Flower(broker, tmp_path_factory.mktemp("flower"), ":".join(FLOWER_AUTH))
    tag = uuid.uuid4().hex[:4]
    web = Web(env={**os.environ, "CONVEYOR_FLOWER__PORT": str(flower.port)}, name=f"cweb{tag}")
    worker = Worker(broker, concurrency=2, name=f"cw{tag}")
    beat = Beat(broker, name=f"cb{tag}")
    processes: list[Any] = [flower, web, worker, beat]
    try:
        # Flower first: it must be listening for the task events the others cause.
        flower.start()
        with ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda process: process.start(), processes[1:]))
        yield Console(web, worker, beat, flower)
    finally:
        for process in reversed(processes):
            if process.process is not None:
                process.terminate()


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Browser]:
    """Headless Debian chromium, once for the module (after the system is up)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browsers` installs Debian's chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser, console: Console) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the web process."""
    ctx = browser.new_context(base_url=console.web.url, viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page logged in to the console as the operator."""
    tab = context.new_page()
    log_in(tab, *OPERATOR)
    tab.wait_for_url("**/console/")
    return tab


def log_in(page: Page, username: str, password: str) -> None:
    """Submit the console's login form."""
    page.goto("/console/login/?next=/console/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def shot(page: Page, name: str) -> None:
    """Save a screenshot of the whole page as a test artifact."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def audit_records(action: str, target: str | None = None) -> list[dict[str, Any]]:
    """Audit records of ``action`` (on ``target``), oldest first."""
    with engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor, action, target, before, after, ip FROM conveyor_audit "
                "WHERE action = :action AND (CAST(:target AS text) IS NULL OR target = :target) "
                "ORDER BY id"
            ),
            {"action": action, "target": target},
        ).mappings()
        return [dict(row) for row in rows]
