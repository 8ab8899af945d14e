"""Payloads of the cleanup, the export and the sales reports, and how rows are encoded.

Defaults are the worker-service template's (90 days, 100 a batch, no dry run); a value
out of range or a field nobody declared is refused, naming the field; an export's
filters are those of its kind. A CSV row reads back with the csv module and a JSON
Lines row with json, decimals exact and times with their offset.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from app.catalog import exports
from app.catalog.reports import SalesReport
from app.notifications import templates
from tasks.catalog_reports import DailyReportPayload, MonthlyReportPayload, month_bounds
from tasks.cleanup import InactiveCleanupPayload
from tasks.exports import ExportPayload


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [".".join(str(p) for p in error["loc"]) for error in exc.value.errors()]


def test_the_cleanup_payload_defaults_to_ninety_days_a_hundred_a_batch_for_real() -> None:
    assert InactiveCleanupPayload().model_dump() == {
        "inactive_days": 90,
        "batch_size": 100,
        "dry_run": False,
    }


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"batch_size": -1}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"inactive_days": 0}, "inactive_days"),
        ({"dry_run": "maybe"}, "dry_run"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_the_cleanup_payload_refuses_a_bad_or_unknown_field_naming_it(
    payload: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        InactiveCleanupPayload.model_validate(payload)
    assert fields(exc) == [field]


def test_an_export_takes_its_kinds_filters_and_defaults_to_csv() -> None:
    job = ExportPayload.model_validate(
        {"kind": "orders", "email_to": ["a@example.com"], "filters": {"status": "paid"}}
    ).root
    assert (job.kind, job.format, job.filters.model_dump()["status"]) == ("orders", "csv", "paid")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "orders", "filters": {"status": "lost"}}, "orders.filters.status"),
        ({"kind": "orders", "filters": {"category_id": 1}}, "orders.filters.category_id"),
        ({"kind": "products", "filters": {"category_id": 0}}, "products.filters.category_id"),
        ({"kind": "products", "format": "xlsx"}, "products.format"),
        ({"kind": "products", "email_to": []}, "products.email_to"),
        ({"kind": "products", "extra": True}, "products.extra"),
        (
            {"kind": "products", "filters": {"updated_since": "2026-01-01T00:00"}},
            "products.filters.updated_since",
        ),  # a time without its offset
    ],
)  # fmt: skip
def test_an_export_refuses_a_bad_field_naming_it(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ExportPayload.model_validate({"email_to": ["a@example.com"], **payload})
    assert fields(exc) == [field]


def test_reports_refuse_a_malformed_month_and_unknown_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        MonthlyReportPayload.model_validate({"month": "2026-13"})
    assert fields(exc) == ["month"]
    with pytest.raises(ValidationError) as exc:
        DailyReportPayload.model_validate({"days": 2})
    assert fields(exc) == ["days"]


ROW = {
    "id": 7,
    "name": 'Oak "desk", large\nwith drawer',
    "price": Decimal("1234.50"),
    "at": datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    "gone": None,
}
COLUMNS = ("id", "name", "price", "at", "gone")


def test_a_csv_row_reads_back_with_its_quotes_newline_exact_decimal_and_offset() -> None:
    data = exports.header("csv", COLUMNS) + exports.encode("csv", COLUMNS, ROW)
    assert list(csv.reader(io.StringIO(data.decode(), newline=""))) == [
        list(COLUMNS),
        ["7", 'Oak "desk", large\nwith drawer', "1234.50", "2026-03-29T01:30:00+02:00", ""],
    ]


def test_a_jsonl_row_is_one_line_with_nulls_and_decimals_as_text() -> None:
    data = exports.header("jsonl", COLUMNS) + exports.encode("jsonl", COLUMNS, ROW)
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    assert json.loads(data) == {
        "id": 7,
        "name": 'Oak "desk", large\nwith drawer',
        "price": "1234.50",
        "at": "2026-03-29T01:30:00+02:00",
        "gone": None,
    }
    assert list(json.loads(data)) == list(COLUMNS), "keys in column order"


def test_plain_leaves_other_values_alone() -> None:
    assert exports.plain(3) == 3 and exports.plain("x") == "x" and exports.plain(None) is None
    assert exports.plain(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("month", "today", "bounds"),
    [
        (None, date(2026, 12, 1), (date(2026, 11, 1), date(2026, 12, 1))),
        (None, date(2026, 1, 1), (date(2025, 12, 1), date(2026, 1, 1))),
        (None, date(2026, 3, 31), (date(2026, 2, 1), date(2026, 3, 1))),
        ("2024-02", date(2026, 5, 5), (date(2024, 2, 1), date(2024, 3, 1))),
        ("2026-12", date(2026, 5, 5), (date(2026, 12, 1), date(2027, 1, 1))),
    ],
)
def test_the_monthly_report_covers_the_month_before_by_default(
    month: str | None, today: date, bounds: tuple[date, date]
) -> None:
    assert month_bounds(month, today) == bounds


def test_a_sales_report_escapes_names_in_html_and_lists_every_product_in_its_csv() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    products = [
        {"product_id": i, "name": f"<b>{i}</b> & co", "quantity": 2, "revenue": Decimal("3.50")}
        for i in range(1, 13)
    ]
    by_status = [{"status": "paid", "orders": 12, "total": Decimal("42.00")}]
    report = SalesReport("Daily", start, start + timedelta(days=1), by_status, products)
    mail = templates.render("sales_report", report=report, top=report.top(), filename="s.csv")
    assert mail.subject == "Daily"
    assert "<b>1</b>" not in mail.html and "&lt;b&gt;1&lt;/b&gt; &amp; co" in mail.html
    assert mail.html.count("&amp; co") == 10, "the top 10 in the body"
    assert "  <b>1</b> & co: 2 sold, 3.50" in mail.text, "text is not escaped"
    rows = list(csv.DictReader(io.StringIO(report.csv().decode(), newline="")))
    assert len(rows) == 12 and rows[0]["revenue"] == "3.50"
    assert report.summary()["revenue"] == "42.00" and report.orders == 12
