"""The catalog's jobs and services in real processes: a worker runs the jobs that the
real API triggers on one broker, beat's declared schedules fire when the specification
says, and a real services process runs the three catalog services.

Executions are counted in the ledger (one job per trigger, completed once) and their
effects read where they land: Redis keys with their TTLs, the report in file storage,
alerts in the ``alerts`` table, the service rows and ``GET /api/v1/services``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.catalog import cache, seed
from app.celery import app as celery_app
from app.db import engine
from app.services.catalog import STOCK_ALERT_PREFIX, CacheWarmer, InventoryMonitor, SearchSync
from app.storage import storage
from beat.defaults import DEFAULT_SCHEDULES
from beat.service import ScheduleService
from config.settings import get_settings
from tests.acceptance.api_support import Api, running, token
from tests.acceptance.conftest import wait_for
from tests.acceptance.test_services import Services, forget_services
from tests.acceptance.workers import Web
from tests.catalog_support import forget_catalog
from tests.servers import Broker, use_broker

pytestmark = pytest.mark.acceptance

#: The catalog's schedules: name → task.
#: Products seeded: the catalog document's 10,000.
PRODUCTS = 10_000

CATALOG = {
    "catalog-daily-analytics": "catalog.daily_analytics",
    "catalog-cache-cleanup": "catalog.cleanup_cache",
    "catalog-popularity": "catalog.update_popularity",
    "catalog-inventory-report": "catalog.inventory_report",
    "catalog-monthly-cleanup": "catalog.monthly_cleanup",
}


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def catalog_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each broker in turn, for the web process and worker of the module's tests."""
    yield from use_broker(request.param)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, catalog_broker: Broker) -> Iterator[Path]:
    """A seeded catalog, its schedules declared, and storage under a temporary root that
    the processes started here share with this one."""
    root = tmp_path_factory.mktemp("catalog") / "storage"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_STORAGE__ROOT", str(root))
        get_settings.cache_clear()
        forget_catalog()
        seed.seed(PRODUCTS, rng_seed=11)
        ScheduleService().sync_defaults()
        try:
            yield root
        finally:
            forget_catalog()
            get_settings.cache_clear()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def web(catalog: Path, catalog_broker: Broker) -> Iterator[Web]:
    with running(beat=False, broker=catalog_broker.url) as process:
        yield process


@pytest.fixture(scope="module")
def api(web: Web) -> Api:
    return Api(web.url, token("write", "catalog-writer")[1])


def done(api: Api, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    job: dict[str, Any] = wait_for(
        lambda: (found := api.ok("GET", f"/jobs/{job_id}"))["status"] == "completed" and found,
        timeout_s,
        f"job {job_id} to complete",
    )
    return job


def runs(job: dict[str, Any]) -> int:
    """How many times a job started running (its executions)."""
    return sum(1 for event in job["events"] if event["to_status"] == "running")


def jobs_of(api: Api, handler: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.ok("GET", "/jobs", params={"handler": handler})["items"]
    return items


def test_triggered_catalog_jobs_run_once_on_a_real_worker_and_leave_their_effects(
    api: Api,
) -> None:
    client = cache.client()

    analytics = api.ok("POST", "/triggers/catalog-daily-analytics")
    report = api.ok("POST", "/triggers/catalog-inventory-report")
    warm = api.ok("POST", "/jobs", 201, json={"handler": "catalog.warm_cache"})

    assert analytics["outcome"] == report["outcome"] == "triggered"
    for job_id in (analytics["job_id"], report["job_id"], warm["id"]):
        assert runs(done(api, job_id)) == 1
    for handler in ("catalog.daily_analytics", "catalog.inventory_report", "catalog.warm_cache"):
        assert len(jobs_of(api, handler)) == 1, handler
    latest = cache.get(cache.ANALYTICS_LATEST)
    assert latest["day"] == (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert 0 < client.ttl(cache.ANALYTICS_LATEST) <= cache.ANALYTICS_TTL_S
    assert 0 < client.ttl(cache.POPULAR) <= cache.WARM_TTL_S
    name = done(api, report["job_id"])["result"]
    stored = storage().info(name)
    assert stored.content_type == "text/csv" and str(stored.job_id) == report["job_id"]
    assert stored.expires_at is not None
    assert stored.expires_at - stored.created_at == pytest.approx(
        timedelta(days=30), abs=timedelta(minutes=1)
    )


def test_a_cleanup_is_scheduled_in_n_minutes_through_the_api_and_waits(api: Api) -> None:
    later = api.ok("POST", "/triggers/catalog-monthly-cleanup", params={"delay_minutes": 120})

    assert later["outcome"] == "scheduled"
    due = datetime.fromisoformat(later["due_at"]) - datetime.now(UTC)
    assert timedelta(minutes=119) < due <= timedelta(minutes=120)
    job = api.ok("GET", f"/jobs/{later['job_id']}")
    assert job["status"] == "scheduled" and job["handler"] == "catalog.monthly_cleanup"
    assert api.ok("DELETE", f"/jobs/{later['job_id']}")["status"] == "cancelled"
    assert runs(api.ok("GET", f"/jobs/{later['job_id']}")) == 0


def steps(times: list[datetime]) -> set[timedelta]:
    """The gaps between consecutive fire times."""
    return {b - a for a, b in pairwise(times)}


def test_the_catalog_schedules_are_listed_and_fire_when_the_specification_says(
    api: Api,
) -> None:
    listed = {s["name"]: s for s in api.ok("GET", "/schedules")}
    assert {name: listed[name]["task"] for name in CATALOG} == CATALOG
    declared = {d.name: d for d in DEFAULT_SCHEDULES if d.name in CATALOG}
    for task in ("catalog.cleanup_cache", "catalog.monthly_cleanup"):
        assert celery_app.tasks[task].max_retries == 2, task
    service = ScheduleService()
    fires = {name: service.preview(name, n=6) for name in CATALOG}
    for name, times in fires.items():
        assert all(t.utcoffset() == timedelta(0) for t in times), name  # UTC whatever tz
        assert all(t.minute == 0 and t.second == 0 for t in times), name
        assert declared[name].timezone == "UTC"
    assert {t.hour for t in fires["catalog-daily-analytics"]} == {2}
    assert steps(fires["catalog-daily-analytics"]) == {timedelta(days=1)}
    assert {(t.weekday(), t.hour) for t in fires["catalog-inventory-report"]} == {(0, 8)}
    assert {(t.day, t.hour) for t in fires["catalog-monthly-cleanup"]} == {(1, 3)}
    assert {t.hour % 6 for t in fires["catalog-cache-cleanup"]} == {0}
    assert steps(fires["catalog-cache-cleanup"]) == {timedelta(hours=6)}
    assert {t.hour for t in fires["catalog-popularity"]} == {0, 12}
    assert steps(fires["catalog-popularity"]) == {timedelta(hours=12)}
    now = datetime.now(UTC)
    assert now < fires["catalog-daily-analytics"][0] <= now + timedelta(days=1)


def test_a_services_process_runs_the_three_catalog_services(api: Api, catalog: Path) -> None:
    assert SearchSync.interval_s() == 30 * 60
    assert CacheWarmer.interval_s() == 6 * 3600
    assert InventoryMonitor.interval_s() == 3600
    names = [SearchSync.name, CacheWarmer.name, InventoryMonitor.name]
    forget_services()
    process = Services(
        "catalog-host",
        ",".join(names),
        env={
            "CONVEYOR_SERVICES__MODULES": json.dumps(["app.services.catalog"]),
            "CONVEYOR_STORAGE__ROOT": str(catalog),
        },
    )
    with engine().begin() as conn:
        short = conn.execute(
            text("SELECT count(*) FROM catalog_inventory WHERE quantity <= 10")
        ).scalar_one()
    with process:
        rows = wait_for(
            lambda: (
                (found := {s["name"]: s for s in api.ok("GET", "/services")["services"]}).keys()
                >= set(names)
                and all(found[n]["last_success_at"] for n in names)
                and found
            ),
            30,
            "the three catalog services to succeed once",
        )
        assert all(rows[n]["mode"] == "singleton" and rows[n]["active"] for n in names)
        assert rows[InventoryMonitor.name]["items_processed"] == short
    with engine().connect() as conn:
        alerts = conn.execute(
            text("SELECT key, count FROM alerts WHERE key LIKE :p AND resolved_at IS NULL"),
            {"p": f"{STOCK_ALERT_PREFIX}%"},
        ).all()
    assert len(alerts) == short and {row.count for row in alerts} == {1}  # one look in 1 h
    assert cache.get(cache.COUNTS)["products"] == PRODUCTS
    assert 0 < cache.client().ttl(cache.CATEGORIES) <= cache.WARM_TTL_S
    forget_services()
