"""The catalog's jobs and services against the real PostgreSQL and Redis.

On a seeded catalog, each job's function does what the specification promises: the
cache warmer, the daily analytics and the popularity update write their Redis keys
with their TTLs; the popularity update writes the scores (and only those that
change); the weekly inventory report is a CSV in file storage, kept 30 days; the
monthly cleanup deletes exactly the cancelled orders past the 90-day cutoff and leaves
the audit log and soft-deleted products to the nightly retention, which takes such a
product once the cancelled orders naming it are gone. The inventory monitor raises one
alert per short product, counts the next check as a sighting of the same alert (one
notification), and resolves the alert once the product is restocked.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from app.catalog import analytics, cache, cleanup, inventory, seed, store
from app.db import engine
from app.jobs.service import JobService
from app.services import alerts
from app.services.catalog import STOCK_ALERT_PREFIX, CacheWarmer, InventoryMonitor, SearchSync
from app.storage import storage
from config.settings import get_settings
from tasks import catalog as catalog_tasks
from tests.catalog_support import TABLES


def _forget_alerts() -> None:
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE alerts"))
        doomed = "SELECT id FROM jobs WHERE handler LIKE 'alerts.%'"
        conn.execute(text(f"DELETE FROM job_events WHERE job_id IN ({doomed})"))
        conn.execute(text("DELETE FROM jobs WHERE handler LIKE 'alerts.%'"))


def _forget_cache(client: redis.Redis) -> None:
    for key in client.scan_iter(match=f"{cache.PREFIX}*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def empty_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """An empty catalog, no open alerts, no catalog keys in Redis, storage under tmp."""
    monkeypatch.setenv("CONVEYOR_STORAGE__ROOT", str(tmp_path / "storage"))
    get_settings.cache_clear()
    client = cache.client()
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY"))
        conn.execute(text("DELETE FROM stored_files"))
    _forget_alerts()
    _forget_cache(client)
    yield client
    _forget_cache(client)
    _forget_alerts()
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY"))
        conn.execute(text("DELETE FROM stored_files"))
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def redis_client(empty_catalog: redis.Redis) -> redis.Redis:
    return empty_catalog


@pytest.fixture
def seeded() -> seed.SeedReport:
    return seed.seed(300, rng_seed=7)


def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine().connect() as conn:
        return [dict(row) for row in conn.execute(text(sql), params).mappings()]


def scalar(sql: str, **params: Any) -> Any:
    with engine().connect() as conn:
        return conn.execute(text(sql), params).scalar()


def execute(sql: str, **params: Any) -> None:
    with engine().begin() as conn:
        conn.execute(text(sql), params)


def assert_ttl(client: redis.Redis, key: str, ttl_s: int) -> None:
    left = client.ttl(key)
    assert ttl_s - 10 <= left <= ttl_s, f"{key}: TTL {left}, expected about {ttl_s}"


def test_the_cache_warmer_writes_popular_products_categories_and_counts_for_7_hours(
    seeded: seed.SeedReport, redis_client: redis.Redis
) -> None:
    items = CacheWarmer().iterate()

    popular = cache.get(cache.POPULAR)
    tree = cache.get(cache.CATEGORIES)
    counts = cache.get(cache.COUNTS)
    assert items == len(popular) + len(tree)
    for key in (cache.POPULAR, cache.CATEGORIES, cache.COUNTS):
        assert_ttl(redis_client, key, cache.WARM_TTL_S)
    assert len(popular) == get_settings().catalog.popular_limit
    best = rows("SELECT id FROM catalog_products ORDER BY popularity_score DESC, id LIMIT 50")
    assert [p["id"] for p in popular] == [row["id"] for row in best]
    assert len(tree) == scalar("SELECT count(*) FROM catalog_categories")
    assert sum(category["products"] for category in tree) == 300
    assert counts["products"] == 300
    assert counts["out_of_stock"] == scalar(
        "SELECT count(*) FROM catalog_inventory WHERE quantity = 0"
    )
    assert counts["critical"] == scalar(
        "SELECT count(*) FROM catalog_inventory WHERE quantity BETWEEN 1 AND 5"
    )
    assert counts["low"] == scalar(
        "SELECT count(*) FROM catalog_inventory WHERE quantity BETWEEN 6 AND 10"
    )
    assert counts["in_stock"] == 300 - counts["out_of_stock"]


def test_daily_analytics_cache_a_days_sales_top_products_and_revenue_for_24_hours(
    seeded: seed.SeedReport, redis_client: redis.Redis
) -> None:
    day: date = scalar(
        "SELECT (created_at AT TIME ZONE 'UTC')::date FROM catalog_orders "
        "WHERE status <> 'cancelled' ORDER BY created_at DESC LIMIT 1"
    )
    window = "o.created_at >= :start AND o.created_at < :end AND o.status <> 'cancelled'"
    start, end = analytics.day_bounds(day)
    revenue = scalar(
        "SELECT sum(l.quantity * l.unit_price) FROM catalog_order_lines l "
        f"JOIN catalog_orders o ON o.id = l.order_id WHERE {window}",
        start=start,
        end=end,
    )

    done = catalog_tasks.daily_analytics(day.isoformat())

    key = cache.analytics_key(day.isoformat())
    cached = cache.get(key)
    assert done["revenue"] == cached["revenue"] == str(revenue)
    assert cache.get(cache.ANALYTICS_LATEST) == cached
    assert_ttl(redis_client, key, cache.ANALYTICS_TTL_S)
    assert_ttl(redis_client, cache.ANALYTICS_LATEST, cache.ANALYTICS_TTL_S)
    assert cached["sales_per_day"][-1]["day"] == day.isoformat()
    assert cached["orders"] == scalar(
        f"SELECT count(*) FROM catalog_orders o WHERE {window}", start=start, end=end
    )
    top_units = scalar(
        "SELECT max(units) FROM (SELECT sum(l.quantity) AS units FROM catalog_order_lines l "
        f"JOIN catalog_orders o ON o.id = l.order_id WHERE {window} GROUP BY l.product_id) s",
        start=start,
        end=end,
    )
    assert cached["top_products"][0]["units"] == top_units
    assert sum(float(c["revenue"]) for c in cached["revenue_by_category"]) == pytest.approx(
        float(revenue)
    )


def test_the_popularity_update_writes_every_changed_score_and_caches_them_for_12_hours(
    seeded: seed.SeedReport, redis_client: redis.Redis
) -> None:
    execute("UPDATE catalog_products SET popularity_score = -1")
    before = scalar("SELECT max(updated_at) FROM catalog_products")

    first = catalog_tasks.update_popularity()
    again = catalog_tasks.update_popularity()

    assert first["changed"] == 300
    assert again["changed"] == 0  # only scores that change are written
    assert scalar("SELECT count(*) FROM catalog_products WHERE popularity_score < 0") == 0
    assert scalar("SELECT max(updated_at) FROM catalog_products") == before  # not re-indexed
    one = rows("""
        SELECT p.id, p.popularity_score AS score, i.quantity,
               (SELECT coalesce(sum(l.quantity), 0) FROM catalog_order_lines l
                JOIN catalog_orders o ON o.id = l.order_id
                WHERE l.product_id = p.id AND o.status <> 'cancelled'
                  AND o.created_at >= now() - interval '30 days') AS sold
        FROM catalog_products p JOIN catalog_inventory i ON i.product_id = p.id
        ORDER BY p.id LIMIT 20""")
    for row in one:
        assert row["score"] == pytest.approx(float(row["sold"]) + min(row["quantity"], 100) / 10)
    scores = cache.get(cache.POPULARITY)
    assert len(scores) == analytics.TOP_SCORES
    assert_ttl(redis_client, cache.POPULARITY, cache.POPULARITY_TTL_S)


def test_the_weekly_inventory_report_is_a_csv_in_storage_kept_30_days(
    seeded: seed.SeedReport,
) -> None:
    name = catalog_tasks.inventory_report("2026-11-30")

    assert name == "catalog/2026-11-30/inventory-report.csv"
    info = storage().info(name)
    assert info.content_type == "text/csv"
    assert info.expires_at is not None
    kept = info.expires_at - info.created_at
    assert timedelta(days=30) - timedelta(minutes=1) < kept <= timedelta(days=30, minutes=1)
    with storage().open(name) as data:
        body = data.read().decode()
    report = list(csv.DictReader(io.StringIO(body)))
    assert len(report) == 300
    assert tuple(report[0]) == inventory.REPORT_COLUMNS
    out = [row for row in report if row["level"] == "out_of_stock"]
    assert len(out) == scalar("SELECT count(*) FROM catalog_inventory WHERE quantity = 0")
    # A second run of the same day replaces the file (delivery is at least once).
    assert catalog_tasks.inventory_report("2026-11-30") == name
    assert len(storage().list_files("catalog/2026-11-30")) == 1


def test_the_monthly_cleanup_deletes_exactly_the_cancelled_orders_past_90_days(
    seeded: seed.SeedReport,
) -> None:
    old, recent = "now() - interval '91 days'", "now() - interval '89 days'"
    orders = [row["id"] for row in rows("SELECT id FROM catalog_orders ORDER BY id LIMIT 4")]
    execute(
        f"UPDATE catalog_orders SET status = 'cancelled', created_at = {old} WHERE id = ANY(:a)",
        a=orders[:2],
    )
    execute(
        f"UPDATE catalog_orders SET status = 'cancelled', created_at = {recent} WHERE id = :i",
        i=orders[2],
    )
    execute(
        f"UPDATE catalog_orders SET status = 'delivered', created_at = {old} WHERE id = :i",
        i=orders[3],
    )
    doomed = [
        row["id"]
        for row in rows(
            "SELECT id FROM catalog_orders WHERE status = 'cancelled' "
            f"AND created_at < {old} + interval '1 hour' ORDER BY id"
        )
    ]
    assert set(orders[:2]) <= set(doomed)
    lines = scalar("SELECT count(*) FROM catalog_order_lines WHERE order_id = ANY(:a)", a=doomed)
    assert lines >= len(doomed), "every order has a line"
    # What the nightly retention owns, however old, is not this cleanup's to delete.
    execute(f"UPDATE catalog_audit_log SET at = {old}")
    audit_before = scalar("SELECT count(*) FROM catalog_audit_log")
    unsold = scalar("""SELECT min(p.id) FROM catalog_products p WHERE NOT EXISTS
                         (SELECT 1 FROM catalog_order_lines l WHERE l.product_id = p.id)""")
    execute(f"UPDATE catalog_products SET deleted_at = {old} WHERE id = :i", i=unsold)
    products_before = scalar("SELECT count(*) FROM catalog_products")

    deleted = catalog_tasks.monthly_cleanup()

    assert deleted == {"cancelled_orders": len(doomed), "order_lines": lines}
    kept = {row["id"] for row in rows("SELECT id FROM catalog_orders WHERE id = ANY(:a)", a=orders)}
    assert kept == set(orders[2:])  # a recent cancelled order, and an old delivered one
    assert (
        scalar("SELECT count(*) FROM catalog_order_lines WHERE order_id = ANY(:a)", a=doomed) == 0
    )
    assert scalar("SELECT count(*) FROM catalog_products") == products_before
    assert scalar("SELECT count(*) FROM catalog_audit_log") == audit_before + 1
    purge = rows("SELECT detail FROM catalog_audit_log WHERE action = 'purge'")
    assert len(purge) == 1
    assert {key: purge[0]["detail"][key] for key in deleted} == deleted
    # Run again: nothing more is past the cutoff.
    assert catalog_tasks.monthly_cleanup() == {"cancelled_orders": 0, "order_lines": 0}


def test_the_nightly_retention_and_the_monthly_cleanup_each_delete_what_the_other_keeps(
    seeded: seed.SeedReport,
) -> None:
    # A product soft-deleted 40 days ago that only old cancelled orders name, an unsold
    # one soft-deleted as long ago, and audit entries 91 days old.
    named = scalar("SELECT min(product_id) FROM catalog_order_lines")
    execute(
        "UPDATE catalog_orders SET status = 'cancelled', created_at = now() - interval '91 days' "
        "WHERE id IN (SELECT order_id FROM catalog_order_lines WHERE product_id = :p)",
        p=named,
    )
    unsold = scalar("""SELECT min(p.id) FROM catalog_products p WHERE NOT EXISTS
                         (SELECT 1 FROM catalog_order_lines l WHERE l.product_id = p.id)""")
    execute(
        "UPDATE catalog_products SET deleted_at = now() - interval '40 days' WHERE id = ANY(:a)",
        a=[named, unsold],
    )
    execute("UPDATE catalog_audit_log SET at = now() - interval '91 days'")
    old_audit = scalar("SELECT count(*) FROM catalog_audit_log")
    assert old_audit >= 1, "the seed audits itself"

    def present() -> set[int]:
        found = rows("SELECT id FROM catalog_products WHERE id = ANY(:a)", a=[named, unsold])
        return {row["id"] for row in found}

    # The nightly retention: the old audit entries and the unsold product, nothing else.
    assert cleanup.purge_retained() == {"audit_entries": old_audit, "soft_deleted_products": 1}
    assert present() == {named}, "an order line still names it"
    # The monthly cleanup: the old cancelled orders, neither audit entries nor products.
    monthly = catalog_tasks.monthly_cleanup()
    assert monthly["cancelled_orders"] >= 1 and monthly["order_lines"] >= 1, monthly
    assert present() == {named}
    assert scalar("SELECT count(*) FROM catalog_order_lines WHERE product_id = :p", p=named) == 0
    # The next night, no order line names the product any more: it goes.
    assert cleanup.purge_retained() == {"audit_entries": 0, "soft_deleted_products": 1}
    assert present() == set()


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A channel configured, so that each notification is a job we can count."""
    monkeypatch.setenv("CONVEYOR_ALERTS__WEBHOOK_URL", "http://127.0.0.1:9/hook")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def stock_alerts() -> list[dict[str, Any]]:
    return rows(
        "SELECT key, severity, count, resolved_at, last_notified_at FROM alerts "
        "WHERE key LIKE :p ORDER BY id",
        p=f"{STOCK_ALERT_PREFIX}%",
    )


def notifications() -> int:
    return len(JobService().list(handler=alerts.WEBHOOK_TASK, limit=500)[0])


def test_the_inventory_monitor_alerts_once_per_short_product_and_resolves_on_restock(
    seeded: seed.SeedReport, channels: None
) -> None:
    short = rows("SELECT product_id, quantity FROM catalog_inventory WHERE quantity <= 10")
    assert short, "the seed leaves some products short"
    monitor = InventoryMonitor()

    assert monitor.iterate() == len(short)
    first = stock_alerts()
    assert sorted(a["key"] for a in first) == sorted(
        f"{STOCK_ALERT_PREFIX}{row['product_id']}" for row in short
    )
    by_key = {a["key"]: a for a in first}
    for row in short:
        expected = "warning" if row["quantity"] > 5 else "critical"
        assert by_key[f"{STOCK_ALERT_PREFIX}{row['product_id']}"]["severity"] == expected
    assert notifications() == len(short)

    monitor.iterate()  # the next check, within the cooldown

    again = stock_alerts()
    assert len(again) == len(short)  # the same alerts, seen twice
    assert {a["count"] for a in again} == {2}
    assert notifications() == len(short)  # and not notified again

    restocked = short[0]["product_id"]
    with engine().begin() as conn:
        assert store.set_stock(conn, restocked, 50)
    assert monitor.iterate() == len(short) - 1
    closed = [a for a in stock_alerts() if a["resolved_at"] is not None]
    assert [a["key"] for a in closed] == [f"{STOCK_ALERT_PREFIX}{restocked}"]
    assert monitor.detail is not None and sum(monitor.detail.values()) == len(short) - 1


def test_the_search_sync_service_indexes_changes_and_removes_deleted_products(
    seeded: seed.SeedReport,
) -> None:
    sync = SearchSync()
    sync.iterate()  # the seed indexed already; this catches up the cursor
    with engine().begin() as conn:
        assert store.soft_delete_product(conn, 1)
        assert store.update_product(conn, 2, name="Zyzzyva telescope")
    done = sync.iterate()
    assert sync.detail is not None and sync.detail["removed"] == 1
    assert sync.detail["indexed"] >= 1 and done == sync.detail["indexed"] + 1
    with engine().connect() as conn:
        assert store.indexed(conn, [1, 2]) == {2}


def test_the_cache_cleanup_deletes_keys_without_ttl_and_stale_analytics(
    redis_client: redis.Redis,
) -> None:
    redis_client.set("catalog:orphan", "1")
    cache.put(cache.analytics_key("2026-11-01"), {"day": "2026-11-01"}, 60)
    cache.put(cache.analytics_key("2026-11-02"), {"day": "2026-11-02"}, 60)
    cache.put(cache.ANALYTICS_LATEST, {"day": "2026-11-02"}, 60)
    cache.put(cache.POPULAR, [], 60)
    redis_client.set("elsewhere:not-ours", "1")
    try:
        assert catalog_tasks.cleanup_cache() == {"without_ttl": 1, "stale_analytics": 1}
        left = {k.decode() for k in redis_client.scan_iter(match="catalog:*")}
        assert left == {cache.analytics_key("2026-11-02"), cache.ANALYTICS_LATEST, cache.POPULAR}
        assert redis_client.exists("elsewhere:not-ours")
    finally:
        redis_client.delete("elsewhere:not-ours")


def test_the_jobs_keep_their_promises_on_10000_products(redis_client: redis.Redis) -> None:
    started = time.monotonic()
    seed.seed(10_000, rng_seed=3)
    assert cache.warm()["products"] == 50
    assert catalog_tasks.update_popularity()["changed"] > 9000
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    assert catalog_tasks.daily_analytics(day.isoformat())["day"] == day.isoformat()
    name = catalog_tasks.inventory_report(day.isoformat())
    assert storage().info(name).size_bytes > 10_000 * 20
    assert InventoryMonitor().iterate() == scalar(
        "SELECT count(*) FROM catalog_inventory WHERE quantity <= 10"
    )
    assert time.monotonic() - started < 60
