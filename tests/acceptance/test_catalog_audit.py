"""The product catalog's management endpoints (specification 004's ``BackgroundJobsController``)
as Conveyor serves them, with its token auth, and the audit trail they leave.

The specification's six endpoints are Conveyor routes (docs/guide.md, "From the API"):

* ``trigger-analytics``: ``POST /triggers/catalog-daily-analytics``;
* ``trigger-inventory-report``: ``POST /triggers/catalog-inventory-report``;
* ``trigger-cache-warmup``: ``POST /jobs`` with ``catalog.warm_cache`` (warming is a
  service, so warming now is a job);
* ``schedule-cleanup?delayMinutes=N``: ``POST /triggers/catalog-monthly-cleanup?delay_minutes=N``;
* ``recurring-jobs``: ``GET /schedules``;
* ``background-services``: ``GET /services``.

The four actions need a ``write`` token and leave one audit record each, naming the action,
the token and the target (read through ``GET /audit``, as an auditor does); refused, they
leave none and run nothing. The two lists need a ``read`` token; reads are not actions, so
they leave no record (docs/api.md, "Audit trail": every write is recorded). A real web
process and worker on the run's Redis answer, and a real services process runs the three
catalog services for the list of services.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.catalog import cache, seed
from app.services.catalog import CacheWarmer, InventoryMonitor, SearchSync
from app.storage import storage
from beat.service import ScheduleService
from config.settings import get_settings
from tests.acceptance.api_support import Api, actor, running, token
from tests.acceptance.conftest import wait_for
from tests.acceptance.test_catalog_jobs import CATALOG
from tests.acceptance.test_services import Services, forget_services
from tests.acceptance.workers import Web
from tests.catalog_support import forget_catalog

pytestmark = pytest.mark.acceptance

#: The catalog's schedules as the specification gives them (UTC): name → cron.
CRONS = {
    "catalog-daily-analytics": "0 2 * * *",
    "catalog-cache-cleanup": "0 */6 * * *",
    "catalog-popularity": "0 */12 * * *",
    "catalog-inventory-report": "0 8 * * MON",
    "catalog-monthly-cleanup": "0 3 1 * *",
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small seeded catalog, its schedules declared, and storage under a temporary root
    that the processes started here share with this one."""
    root = tmp_path_factory.mktemp("catalog-audit") / "storage"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_STORAGE__ROOT", str(root))
        get_settings.cache_clear()
        forget_catalog()
        seed.seed(30, rng_seed=7)
        ScheduleService().sync_defaults()
        try:
            yield root
        finally:
            forget_catalog()
            get_settings.cache_clear()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def web(catalog: Path) -> Iterator[Web]:
    """A web process and a worker on the run's Redis."""
    with running(beat=False) as process:
        yield process


@pytest.fixture(scope="module")
def operator() -> tuple[Any, str]:
    """A ``write`` token: (row, secret)."""
    return token("write", "catalog-operator")


@pytest.fixture(scope="module")
def auditor(web: Web) -> Api:
    return Api(web.url, token("admin", "catalog-auditor")[1])


@pytest.fixture(scope="module")
def viewer(web: Web) -> Api:
    """A client with a ``read`` token."""
    return Api(web.url, token("read", "catalog-viewer")[1])


@pytest.fixture
def since() -> datetime:
    """The start of the test: the audit records after it are the test's."""
    return datetime.now(UTC) - timedelta(milliseconds=1)


def trail(auditor: Api, since: datetime) -> list[dict[str, Any]]:
    """Every audit record written since ``since``, oldest first."""
    items: list[dict[str, Any]] = auditor.ok(
        "GET", "/audit", params={"since": since.isoformat(), "limit": 500}
    )["items"]
    return items[::-1]


def jobs_of(api: Api, handler: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.ok("GET", "/jobs", params={"handler": handler})["items"]
    return items


def done(api: Api, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = wait_for(
        lambda: (found := api.ok("GET", f"/jobs/{job_id}"))["status"] == "completed" and found,
        60,
        f"job {job_id} to complete",
    )
    return job


def refused(web: Web, viewer: Api, method: str, path: str, **kwargs: Any) -> None:
    """``method path`` without a token is 401, and with a ``read`` token 403."""
    assert Api(web.url).error(method, path, 401, **kwargs)["code"] == "unauthorized"
    forbidden = viewer.error(method, path, 403, **kwargs)
    assert forbidden["code"] == "forbidden" and "'write'" in forbidden["message"]


def the_record(auditor: Api, since: datetime) -> dict[str, Any]:
    """The one audit record written since ``since``."""
    records = trail(auditor, since)
    assert len(records) == 1, records
    return records[0]


def test_trigger_analytics_runs_the_daily_analytics_once_and_is_audited(
    web: Web, operator: tuple[Any, str], viewer: Api, auditor: Api, since: datetime
) -> None:
    path, task = "/triggers/catalog-daily-analytics", "catalog.daily_analytics"
    refused(web, viewer, "POST", path)
    assert trail(auditor, since) == [], "a refused request leaves no record"
    api = Api(web.url, operator[1])
    assert jobs_of(api, task) == [], "nor a job"

    answer = api.ok("POST", path)

    assert answer["schedule"] == "catalog-daily-analytics" and answer["outcome"] == "triggered"
    assert answer["detail"] == f"run now by {actor(operator[0])}"
    job = done(api, answer["job_id"])
    assert job["handler"] == task and job["metadata"]["schedule"] == "catalog-daily-analytics"
    assert [j["id"] for j in jobs_of(api, task)] == [answer["job_id"]]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert cache.get(cache.ANALYTICS_LATEST)["day"] == yesterday
    assert 0 < cache.client().ttl(cache.ANALYTICS_LATEST) <= cache.ANALYTICS_TTL_S
    record = the_record(auditor, since)
    assert record["action"] == "schedule.trigger"
    assert record["actor"] == actor(operator[0]) == f"token:{operator[0].prefix} (catalog-operator)"
    assert record["target"] == "schedule:catalog-daily-analytics"
    assert record["after"]["job_id"] == answer["job_id"]
    assert record["after"]["outcome"] == "triggered" and record["ip"] == "127.0.0.1"


def test_trigger_inventory_report_stores_the_report_and_is_audited(
    web: Web, operator: tuple[Any, str], viewer: Api, auditor: Api, since: datetime
) -> None:
    path, task = "/triggers/catalog-inventory-report", "catalog.inventory_report"
    refused(web, viewer, "POST", path)
    assert trail(auditor, since) == []
    api = Api(web.url, operator[1])
    assert jobs_of(api, task) == []

    answer = api.ok("POST", path)

    assert answer["schedule"] == "catalog-inventory-report" and answer["outcome"] == "triggered"
    job = done(api, answer["job_id"])
    stored = storage().info(job["result"])
    assert stored.content_type == "text/csv" and str(stored.job_id) == answer["job_id"]
    record = the_record(auditor, since)
    assert record["action"] == "schedule.trigger" and record["actor"] == actor(operator[0])
    assert record["target"] == "schedule:catalog-inventory-report"
    assert record["after"]["job_id"] == answer["job_id"]


def test_trigger_cache_warmup_enqueues_the_warming_job_and_is_audited(
    web: Web, operator: tuple[Any, str], viewer: Api, auditor: Api, since: datetime
) -> None:
    body = {"handler": "catalog.warm_cache"}
    refused(web, viewer, "POST", "/jobs", json=body)
    assert trail(auditor, since) == []
    api = Api(web.url, operator[1])
    assert jobs_of(api, "catalog.warm_cache") == []

    answer = api.ok("POST", "/jobs", 201, json=body)

    assert answer["status"] == "queued"
    job = done(api, answer["id"])
    assert job["result"]["products"] > 0 and job["result"]["categories"] > 0
    assert 0 < cache.client().ttl(cache.POPULAR) <= cache.WARM_TTL_S
    record = the_record(auditor, since)
    assert record["action"] == "job.enqueue" and record["actor"] == actor(operator[0])
    assert record["target"] == f"job:{answer['id']}"
    assert record["before"] is None and record["after"]["status"] == "queued"


def test_schedule_cleanup_in_n_minutes_waits_and_is_audited(
    web: Web, operator: tuple[Any, str], viewer: Api, auditor: Api, since: datetime
) -> None:
    path, task = "/triggers/catalog-monthly-cleanup", "catalog.monthly_cleanup"
    later = {"delay_minutes": 120}
    refused(web, viewer, "POST", path, params=later)
    api = Api(web.url, operator[1])
    for bad in (0, 7 * 24 * 60 + 1):  # at least a minute, at most a week
        wrong = api.error("POST", path, 422, params={"delay_minutes": bad})
        assert wrong["field"] == "delay_minutes", wrong
    assert trail(auditor, since) == []
    assert jobs_of(api, task) == []

    answer = api.ok("POST", path, params=later)

    assert answer["schedule"] == "catalog-monthly-cleanup" and answer["outcome"] == "scheduled"
    due = datetime.fromisoformat(answer["due_at"]) - datetime.now(UTC)
    assert timedelta(minutes=119) < due <= timedelta(minutes=120)
    job = api.ok("GET", f"/jobs/{answer['job_id']}")
    assert job["status"] == "scheduled" and job["handler"] == task
    assert job["metadata"]["triggered_by"] == actor(operator[0])
    record = the_record(auditor, since)
    assert record["action"] == "schedule.trigger" and record["actor"] == actor(operator[0])
    assert record["target"] == "schedule:catalog-monthly-cleanup"
    assert record["after"]["outcome"] == "scheduled"
    assert record["after"]["job_id"] == answer["job_id"]


def test_recurring_jobs_are_listed_to_a_read_token_and_leave_no_record(
    web: Web, viewer: Api, auditor: Api, since: datetime
) -> None:
    Api(web.url).error("GET", "/schedules", 401)

    listed = {s["name"]: s for s in viewer.ok("GET", "/schedules")}

    assert {name: listed[name]["task"] for name in CATALOG} == CATALOG
    assert {name: listed[name]["cron"] for name in CATALOG} == CRONS
    assert all(listed[name]["timezone"] == "UTC" and listed[name]["enabled"] for name in CATALOG)
    assert trail(auditor, since) == [], "a read is not an action"


def test_background_services_are_listed_to_a_read_token_and_leave_no_record(
    web: Web, viewer: Api, auditor: Api, since: datetime, catalog: Path
) -> None:
    names = {SearchSync.name: 1800, CacheWarmer.name: 6 * 3600, InventoryMonitor.name: 3600}
    Api(web.url).error("GET", "/services", 401)
    forget_services()
    env = {
        "CONVEYOR_SERVICES__MODULES": json.dumps(["app.services.catalog"]),
        "CONVEYOR_STORAGE__ROOT": str(catalog),
    }
    try:
        with Services("catalog-audit-host", ",".join(names), env, heartbeat_interval_s=0.5):
            rows = wait_for(
                lambda: (
                    (
                        found := {s["name"]: s for s in viewer.ok("GET", "/services")["services"]}
                    ).keys()
                    >= names.keys()
                    and all(found[n]["last_success_at"] for n in names)
                    and found
                ),
                30,
                "the three catalog services to succeed once",
            )
    finally:
        forget_services()

    for name, every_s in names.items():
        assert rows[name]["mode"] == "singleton" and rows[name]["active"], rows[name]
        assert rows[name]["state"] == "running" and rows[name]["host"] == "catalog-audit-host"
        assert rows[name]["detail"]["every_s"] == every_s, name
    assert trail(auditor, since) == [], "a read is not an action"
