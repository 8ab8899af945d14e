"""Exports and sales reports through a real worker, a real web process and an SMTP sink.

A worker on the ``reports`` queue exports the seeded products as CSV: the email that
reaches the sink carries a link under ``web.public_url``, the web process serves
exactly the stored bytes for it (which parse back to every product) and answers 403
once one character is changed, and the job's progress reached 100. The daily sales
report arrives as HTML with its CSV attached. Every schedule issue 14 adds fires when
it says (ScheduleService().preview). Redis alone carries the jobs: nothing here
depends on the broker.
"""

from __future__ import annotations

import csv
import email
import io
import itertools
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from app.catalog import seed
from app.celery import app
from app.db import engine
from app.embedded import free_port
from app.jobs.service import JobService
from app.storage import LocalStorage
from beat.service import ScheduleService
from config.settings import get_settings
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Web, Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

TABLES = (
    "catalog_search_documents, catalog_cursors, catalog_audit_log, catalog_order_lines, "
    "catalog_orders, catalog_customers, catalog_inventory, catalog_products, catalog_categories"
)


class Sink:
    """An SMTP server that keeps every message it is given, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


#: Products seeded for each test: the catalog document's 10,000.
PRODUCTS = 10_000


@pytest.fixture
def catalog() -> Iterator[None]:
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES}, stored_files RESTART IDENTITY"))
    seed.seed(PRODUCTS, rng_seed=14)
    yield
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES}, stored_files RESTART IDENTITY"))


def files_at(root: Path) -> LocalStorage:
    settings = get_settings()
    section = settings.storage.model_copy(update={"root": root})
    return LocalStorage.from_settings(settings.model_copy(update={"storage": section}))


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def test_an_export_mails_a_link_the_web_process_serves_exactly_and_guards(
    broker: Broker, effects: Effects, catalog: None, sink: tuple[Sink, int], tmp_path: Path
) -> None:
    handler, port = sink
    root = tmp_path / "storage"
    service = JobService(app)
    with Web(env={"CONVEYOR_STORAGE__ROOT": str(root)}) as web:
        env = {
            "CONVEYOR_SMTP__HOST": "127.0.0.1",
            "CONVEYOR_SMTP__PORT": str(port),
            "CONVEYOR_STORAGE__ROOT": str(root),
            "CONVEYOR_WEB__PUBLIC_URL": web.url,
        }
        with Worker(broker.url, queues="reports", env=env):
            job_id = service.enqueue(
                "reports.export",
                {"kind": "products", "format": "csv", "email_to": ["ops@example.com"]},
            )
            wait_for(lambda: service.get(job_id)["status"] == "completed", 60, "the export")
        job = service.get(job_id)
        assert job["progress"] == 100, job
        assert job["progress_message"] == f"{PRODUCTS} products exported as csv, link mailed"

        (message,) = handler.messages
        assert message["To"] == "ops@example.com"
        body = message.get_body(("plain",))
        assert body is not None
        links = re.findall(rf"{re.escape(web.url)}/files/\S+", body.get_content())
        assert links == [job["result"]["link"]]
        status, data = get(links[0])
        assert status == 200, data[:200]
        with files_at(root).open(job["result"]["name"]) as stored:
            assert data == stored.read()
        rows = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
        assert [int(r["id"]) for r in rows] == list(range(1, PRODUCTS + 1))

        last = links[0][-1]
        altered = links[0][:-1] + ("A" if last != "A" else "B")
        assert get(altered)[0] == 403


def test_an_export_over_the_file_limit_stops_at_once_naming_it_and_stores_nothing(
    broker: Broker, effects: Effects, catalog: None, sink: tuple[Sink, int], tmp_path: Path
) -> None:
    handler, port = sink
    root = tmp_path / "storage"
    env = {
        "CONVEYOR_SMTP__HOST": "127.0.0.1",
        "CONVEYOR_SMTP__PORT": str(port),
        "CONVEYOR_STORAGE__ROOT": str(root),
        "CONVEYOR_STORAGE__MAX_FILE_BYTES": "100000",  # the first 1,000 rows are more
    }
    service = JobService(app)
    with Worker(broker.url, queues="reports", env=env):
        job_id = service.enqueue(
            "reports.export", {"kind": "products", "format": "csv", "email_to": ["a@example.com"]}
        )
        job = wait_for(
            lambda: (j := service.get(job_id))["status"] == "dead" and j, 60, "the export dead"
        )
    assert "over the limit of 100000 bytes (storage.max_file_bytes)" in job["last_error"]
    assert job["attempts"] == 1 and not job["progress"], "stopped at its first chunk"
    assert files_at(root).list_files("exports/") == [] and handler.messages == []


def test_the_daily_report_arrives_as_html_with_its_csv_attached(
    broker: Broker, effects: Effects, catalog: None, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    with engine().connect() as conn:
        day: date = conn.execute(
            text("SELECT max(created_at AT TIME ZONE 'UTC')::date FROM catalog_orders")
        ).scalar_one()
    env = {"CONVEYOR_SMTP__HOST": "127.0.0.1", "CONVEYOR_SMTP__PORT": str(port)}
    service = JobService(app)
    with Worker(broker.url, queues="reports", env=env):
        job_id = service.enqueue(
            "reports.catalog_daily", {"day": day.isoformat(), "email_to": ["boss@example.com"]}
        )
        wait_for(lambda: service.get(job_id)["status"] == "completed", 60, "the report")
    result = service.get(job_id)["result"]
    assert result["orders"] > 0 and result["emailed_to"] == ["boss@example.com"]

    (message,) = handler.messages
    assert message["Subject"] == f"Daily sales report, {day.isoformat()}"
    html = message.get_body(("html",))
    assert html is not None and "<table" in html.get_content() and "Revenue:" in html.get_content()
    (attachment,) = message.iter_attachments()
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename() == f"sales-{day.isoformat()}.csv"
    content = attachment.get_content()
    text_csv = content if isinstance(content, str) else content.decode()
    rows = list(csv.DictReader(io.StringIO(text_csv, newline="")))
    assert len(rows) == result["products_sold"] > 0
    assert list(rows[0]) == ["product_id", "name", "quantity", "revenue"]


def empty_schedules() -> None:
    with engine().begin() as conn:
        conn.execute(
            text(
                "TRUNCATE conveyor_schedule, conveyor_schedule_fire, "
                "django_celery_beat_periodictask, django_celery_beat_crontabschedule, "
                "django_celery_beat_intervalschedule CASCADE"
            )
        )


@pytest.fixture
def schedules() -> Iterator[ScheduleService]:
    empty_schedules()
    yield ScheduleService()
    empty_schedules()


def test_every_new_schedule_fires_when_it_says(schedules: ScheduleService) -> None:
    service = schedules
    assert {
        name: outcome for name, outcome in service.sync_defaults().items() if "sales" in name
    } == {"catalog-daily-sales-report": "created", "catalog-monthly-sales-report": "created"}
    expected = {
        "catalog-retention": lambda t: (t.hour, t.minute) == (2, 0),
        "catalog-daily-sales-report": lambda t: (t.hour, t.minute) == (6, 0),
        "catalog-weekly-inactive-cleanup": lambda t: (t.weekday(), t.hour, t.minute) == (6, 3, 0),
        "catalog-monthly-sales-report": lambda t: (t.day, t.hour, t.minute) == (1, 0, 0),
    }
    now = datetime.now(UTC)
    for name, fires in expected.items():
        times = service.preview(name, 4)
        assert len(times) == 4 and all(t > now for t in times), name
        assert {t.utcoffset() for t in times} == {timedelta(0)}, (name, times)
        assert all(fires(t) for t in times), (name, times)
        gaps = {(b - a).days for a, b in itertools.pairwise(times)}
        assert gaps <= {1, 7, 28, 29, 30, 31}, (name, gaps)
    daily = service.preview("catalog-daily-sales-report", 3)
    assert [(b - a).days for a, b in itertools.pairwise(daily)] == [1, 1]
    weekly = service.preview("catalog-weekly-inactive-cleanup", 3)
    assert [(b - a).days for a, b in itertools.pairwise(weekly)] == [7, 7]
    monthly = service.preview("catalog-monthly-sales-report", 3)
    assert len({(t.year, t.month) for t in monthly}) == 3


def test_a_worker_runs_the_cleanup_dry_then_for_real_with_progress(
    broker: Broker, effects: Effects, catalog: None
) -> None:
    with engine().begin() as conn:
        conn.execute(
            text(
                "UPDATE catalog_products SET updated_at = now() - interval '100 days' "
                "WHERE id <= 150"
            )
        )
        on_orders = set(
            conn.execute(
                text("SELECT DISTINCT product_id FROM catalog_order_lines WHERE product_id <= 150")
            ).scalars()
        )
    deletable = 150 - len(on_orders)
    service = JobService(app)
    with Worker(broker.url, queues="background"):
        dry = service.enqueue("maintenance.cleanup_inactive_products", {"dry_run": True})
        wait_for(lambda: service.get(dry)["status"] == "completed", 60, "the dry run")
        real = service.enqueue("maintenance.cleanup_inactive_products", {"batch_size": 7})
        wait_for(lambda: service.get(real)["status"] == "completed", 60, "the cleanup")
    dry_result, real_result = service.get(dry)["result"], service.get(real)["result"]
    assert (dry_result["deleted"], dry_result["batches"]) == (deletable, 0)
    assert (real_result["deleted"], real_result["referenced"]) == (deletable, len(on_orders))
    assert real_result["batches"] == -(-deletable // 7)
    assert service.get(real)["progress"] == 100
    with engine().connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM catalog_products")).scalar_one()
    assert left == PRODUCTS - deletable
