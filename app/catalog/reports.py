"""Sales reports of the catalog over a period: per order status, and per product sold.

``build(start, end)`` reads orders placed in [start, end) (UTC). A report gives its
figures, its best sellers (:meth:`SalesReport.top`, what a mail's body lists) and a CSV
of every product sold. Cancelled orders are counted per status but sell nothing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from app.catalog import store
from app.db import engine as default_engine

#: Best sellers a report's mail lists in its body (the CSV has them all).
TOP_PRODUCTS = 10
#: Columns of the CSV, one row per product sold.
CSV_COLUMNS = ("product_id", "name", "quantity", "revenue")


@dataclass(frozen=True)
class SalesReport:
    """Orders placed in [start, end)."""

    title: str
    start: datetime
    end: datetime
    by_status: list[dict[str, Any]]
    products: list[dict[str, Any]]

    @property
    def orders(self) -> int:
        """Orders placed in the period, whatever their status."""
        return sum(int(row["orders"]) for row in self.by_status)

    @property
    def revenue(self) -> Decimal:
        """What the products sold brought in (cancelled orders left out)."""
        return sum((Decimal(row["revenue"]) for row in self.products), Decimal(0))

    def summary(self) -> dict[str, Any]:
        """The figures, as JSON can carry them."""
        return {
            "title": self.title,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "orders": self.orders,
            "revenue": str(self.revenue),
            "products_sold": len(self.products),
            "by_status": {r["status"]: int(r["orders"]) for r in self.by_status},
        }

    def csv(self) -> bytes:
        """Every product sold: product_id, name, quantity, revenue."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in self.products:
            writer.writerow([row[column] for column in CSV_COLUMNS])
        return out.getvalue().encode()

    def top(self) -> list[dict[str, Any]]:
        """The best-selling products, those a mail's body lists."""
        return self.products[:TOP_PRODUCTS]


def build(title: str, start: datetime, end: datetime, engine: Engine | None = None) -> SalesReport:
    """The sales report of orders placed in [``start``, ``end``)."""
    with (engine or default_engine()).connect() as conn:
        by_status = store.orders.report_by_status(conn, start, end)
        products = store.orders.report_products_sold(conn, start, end)
    return SalesReport(title, start, end, by_status, products)
