"""Sales reports of the catalog over a period: per order status, and per product sold.

``build(start, end)`` reads orders placed in [start, end) (UTC). A report renders as
text, as HTML (for the body of an email) and as CSV (one row per product sold, for
its attachment). Cancelled orders are counted per status but sell nothing.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from app.catalog import store
from app.db import engine as default_engine

#: Products the HTML and text bodies list (the CSV has them all).
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

    def text(self) -> str:
        """The report as plain text."""
        lines = [self.title, "", f"Orders: {self.orders}", f"Revenue: {self.revenue}", ""]
        lines += [f"  {r['status']}: {r['orders']}" for r in self.by_status]
        lines += ["", f"Top {TOP_PRODUCTS} products:"]
        lines += [
            f"  {r['name']}: {r['quantity']} sold, {r['revenue']}"
            for r in self.products[:TOP_PRODUCTS]
        ]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """The report as an HTML document."""
        e = html.escape
        statuses = "".join(
            f"<tr><td>{e(r['status'])}</td><td>{r['orders']}</td><td>{r['total']}</td></tr>"
            for r in self.by_status
        )
        products = "".join(
            f"<tr><td>{e(r['name'])}</td><td>{r['quantity']}</td><td>{r['revenue']}</td></tr>"
            for r in self.products[:TOP_PRODUCTS]
        )
        return (
            f"<!DOCTYPE html><html><body><h1>{e(self.title)}</h1>"
            f"<p>Orders: {self.orders}. Revenue: {self.revenue}.</p>"
            "<table><tr><th>Status</th><th>Orders</th><th>Total</th></tr>"
            f"{statuses}</table>"
            f"<h2>Top {TOP_PRODUCTS} products</h2>"
            "<table><tr><th>Product</th><th>Sold</th><th>Revenue</th></tr>"
            f"{products}</table></body></html>"
        )


def build(title: str, start: datetime, end: datetime, engine: Engine | None = None) -> SalesReport:
    """The sales report of orders placed in [``start``, ``end``)."""
    with (engine or default_engine()).connect() as conn:
        by_status = store.orders.report_by_status(conn, start, end)
        products = store.orders.report_products_sold(conn, start, end)
    return SalesReport(title, start, end, by_status, products)
