"""The catalog's cleanup and exports against the real database.

On a small seeded catalog with some products made old (and some of those
soft-deleted), a dry run deletes nothing and counts exactly what the real run then
deletes: the products past the cutoff that no order line names, in batches of
``batch_size`` (one delete statement each, plus the one that finds nothing more). The
nightly retention deletes old audit entries and products soft-deleted over 30 days
ago. An export of 50,000 products streams through a server-side cursor in chunks,
with a bounded peak of Python memory, and the stored file parses back to exactly the
rows. JobService refuses a bad cleanup payload, naming the field.
"""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from app.catalog import cleanup, exports, seed, store
from app.celery import app
from app.db import engine
from app.errors import InvalidPayload
from app.jobs.service import JobService
from app.storage import LocalStorage
from config.settings import get_settings
from tasks import catalog_reports
from tests.catalog_support import empty_catalog_tables

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def empty_catalog() -> Iterator[None]:
    empty_catalog_tables()
    yield
    empty_catalog_tables()


def sql(statement: str, **params: Any) -> list[Any]:
    with engine().begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result.scalars()) if result.returns_rows else []


def age(ids: list[int], days: int, *, deleted: bool = False) -> None:
    """Make ``ids`` unchanged for ``days`` (and soft-deleted then)."""
    then = NOW - timedelta(days=days)
    sql(
        "UPDATE catalog_products SET updated_at = :then, "
        "deleted_at = CASE WHEN :deleted THEN CAST(:then AS timestamptz) END "
        "WHERE id = ANY(:ids)",
        then=then,
        deleted=deleted,
        ids=ids,
    )


@pytest.fixture
def aged() -> dict[str, set[int]]:
    """60 products: 1-20 unchanged for 100 days, 21-30 soft-deleted 120 days ago, 31-35
    unchanged for 80 days, the rest fresh; which of the old ones orders name."""
    seed.seed(60, rng_seed=3)
    age(list(range(1, 21)), 100)
    age(list(range(21, 31)), 120, deleted=True)
    age(list(range(31, 36)), 80)
    on_orders = set(sql("SELECT DISTINCT product_id FROM catalog_order_lines"))
    old = set(range(1, 31))
    return {
        "deletable": old - on_orders,
        "live": set(range(1, 21)) - on_orders,
        "soft_deleted": set(range(21, 31)) - on_orders,
        "referenced": old & on_orders,
    }


def product_ids() -> set[int]:
    return set(sql("SELECT id FROM catalog_products"))


def test_a_dry_run_deletes_nothing_and_counts_what_the_real_run_deletes(
    aged: dict[str, set[int]],
) -> None:
    assert aged["deletable"] and aged["referenced"], "the seed puts some old ones on orders"
    before = product_ids()

    report = cleanup.cleanup_inactive(90, 3, dry_run=True, now=NOW)

    assert product_ids() == before
    assert (report.live, report.soft_deleted, report.referenced, report.batches) == (
        len(aged["live"]),
        len(aged["soft_deleted"]),
        len(aged["referenced"]),
        0,
    )
    assert report.dry_run and report.deleted == len(aged["deletable"])


def test_the_real_run_deletes_exactly_the_products_past_the_cutoff_in_batches(
    aged: dict[str, set[int]],
) -> None:
    before = product_ids()
    deletes: list[str] = []
    seen: list[tuple[int, int]] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "DELETE FROM catalog_products p USING doomed" in statement:
            deletes.append(statement)

    event.listen(engine(), "before_cursor_execute", count)
    try:
        report = cleanup.cleanup_inactive(
            90, 3, now=NOW, progress=lambda done, total: seen.append((done, total))
        )
    finally:
        event.remove(engine(), "before_cursor_execute", count)

    n = len(aged["deletable"])
    assert product_ids() == before - aged["deletable"]
    assert (report.deleted, report.live, report.soft_deleted) == (
        n,
        len(aged["live"]),
        len(aged["soft_deleted"]),
    )
    assert len(deletes) == n // 3 + 1, "one statement per batch, the last finding less than 3"
    assert report.batches == -(-n // 3)
    assert seen[-1] == (n, n) and all(done <= total for done, total in seen)
    per_batch = sql(
        "SELECT (detail->>'live')::int + (detail->>'soft_deleted')::int "
        "FROM catalog_audit_log WHERE action = 'cleanup' ORDER BY id"
    )
    assert sum(per_batch) == n and max(per_batch) == 3, "one audited transaction per batch"
    with engine().connect() as conn:  # their stock went with them
        assert store.counts(conn)["inventory"] == len(before) - n
    assert cleanup.cleanup_inactive(90, 3, now=NOW).deleted == 0, "nothing left to do"


def test_the_nightly_retention_deletes_old_audit_entries_and_long_soft_deleted_products() -> None:
    seed.seed(40, rng_seed=4)
    on_orders = set(sql("SELECT DISTINCT product_id FROM catalog_order_lines"))
    age(list(range(1, 11)), 31, deleted=True)
    age(list(range(11, 21)), 29, deleted=True)
    sql(
        "INSERT INTO catalog_audit_log (entity, action, at) "
        "SELECT 'product', 'update', now() - make_interval(days => d) "
        "FROM generate_series(85, 95) AS d"
    )
    audit_before = sql("SELECT count(*) FROM catalog_audit_log")[0]

    deleted = cleanup.purge_retained(now=NOW)

    gone = set(range(1, 11)) - on_orders
    assert deleted == {"audit_entries": 5, "soft_deleted_products": len(gone)}
    assert product_ids() == set(range(1, 41)) - gone
    assert sql("SELECT count(*) FROM catalog_audit_log")[0] == audit_before - 5


def test_job_service_refuses_a_bad_cleanup_payload_naming_the_field() -> None:
    service = JobService(app)
    with pytest.raises(InvalidPayload, match=r"batch_size: Input should be greater than"):
        service.enqueue("maintenance.cleanup_inactive_products", {"batch_size": -1})
    with pytest.raises(InvalidPayload, match=r"bogus: Extra inputs are not permitted"):
        service.enqueue("maintenance.cleanup_inactive_products", {"bogus": 1})
    with pytest.raises(InvalidPayload, match=r"orders\.filters\.status"):
        service.enqueue(
            "reports.export",
            {"kind": "orders", "email_to": ["a@example.com"], "filters": {"status": "x"}},
        )


@pytest.fixture
def files(tmp_path: Path) -> Iterator[LocalStorage]:
    settings = get_settings()
    section = settings.storage.model_copy(update={"root": tmp_path / "storage"})
    yield LocalStorage.from_settings(settings.model_copy(update={"storage": section}))
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE stored_files"))


@pytest.mark.timeout(240)
def test_fifty_thousand_products_stream_in_chunks_and_parse_back_exactly(
    files: LocalStorage, tmp_path: Path
) -> None:
    seed.seed(50_000, rng_seed=5)
    chunks: list[int] = []
    with (tmp_path / "out.jsonl").open("w+b") as out, engine().connect() as conn:
        tracemalloc.start()
        try:
            rows = exports.write(
                conn,
                out,
                "products",
                {"category_id": None, "updated_since": None, "include_deleted": False},
                "jsonl",
                progress=lambda done, total: chunks.append(done),
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        out.seek(0)
        stored = files.save("exports/products.jsonl", out)

    assert rows == 50_000 and chunks == list(range(1000, 50_001, 1000)), "1,000 rows a fetch"
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes: more than a few chunks in memory"
    with files.open(stored.name) as handle:
        parsed = [json.loads(line) for line in handle]
    with engine().connect() as conn:
        query = text("SELECT id, name, price::text AS price, updated_at FROM catalog_products")
        expected = {row.id: row for row in conn.execute(query)}
    assert [row["id"] for row in parsed] == sorted(expected)
    assert all(
        (r["name"], r["price"], datetime.fromisoformat(r["updated_at"]))
        == (expected[r["id"]].name, expected[r["id"]].price, expected[r["id"]].updated_at)
        for r in parsed
    )
    assert list(parsed[0]) == list(exports.COLUMNS["products"])


def test_an_orders_csv_export_takes_only_what_its_filters_select(tmp_path: Path) -> None:
    seed.seed(200, rng_seed=6)
    filters = {
        "status": "paid",
        "customer_id": None,
        "created_since": NOW - timedelta(days=30),
        "created_before": None,
    }
    out = io.BytesIO()
    with engine().connect() as conn:
        rows = exports.write(conn, out, "orders", filters, "csv", chunk_rows=7)
    parsed = list(csv.DictReader(io.StringIO(out.getvalue().decode(), newline="")))
    expected = sql(
        "SELECT id FROM catalog_orders WHERE status = 'paid' AND created_at >= :since ORDER BY id",
        since=filters["created_since"],
    )
    assert rows == len(parsed) == len(expected) > 0
    assert [int(r["id"]) for r in parsed] == expected
    assert {r["status"] for r in parsed} == {"paid"}


def test_the_monthly_report_counts_the_months_orders_and_mails_nobody_without_recipients() -> None:
    seed.seed(200, rng_seed=7)
    month = sql(
        "SELECT to_char(max(created_at AT TIME ZONE 'UTC'), 'YYYY-MM') FROM catalog_orders"
    )[0]
    in_month = sql(
        "SELECT count(*) FROM catalog_orders "
        "WHERE to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') = :month",
        month=month,
    )[0]

    result = catalog_reports.catalog_monthly(month=month, email_to=[])

    assert (result["orders"], result["emailed_to"], result["message_id"]) == (in_month, [], None)
    assert result["start"].startswith(f"{month}-01T00:00:00")
    assert result["title"] == f"Monthly sales report, {month}"
