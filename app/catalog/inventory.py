"""Stock levels: which live products run low, and the weekly inventory report's CSV.

A product is ``out_of_stock`` at 0, ``critical`` at 1 to ``catalog.critical_stock``
(5) and ``low`` up to ``catalog.low_stock`` (10); above that it is fine.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine

from app.catalog import store
from app.db import engine as default_engine
from config.settings import CatalogSettings, get_settings


class StockLevel(StrEnum):
    """How short a product's stock is."""

    OUT_OF_STOCK = "out_of_stock"
    CRITICAL = "critical"
    LOW = "low"
    OK = "ok"


@dataclass(frozen=True)
class Shortage:
    """A live product whose stock is at or under ``catalog.low_stock``."""

    product_id: int
    name: str
    quantity: int
    level: StockLevel


#: The report's columns, in order.
REPORT_COLUMNS = ("product_id", "name", "category", "price", "quantity", "level", "stock_value")


def level(quantity: int, conf: CatalogSettings) -> StockLevel:
    """The stock level of ``quantity`` under the thresholds of ``conf``."""
    if quantity <= 0:
        return StockLevel.OUT_OF_STOCK
    if quantity <= conf.critical_stock:
        return StockLevel.CRITICAL
    if quantity <= conf.low_stock:
        return StockLevel.LOW
    return StockLevel.OK


def shortages(engine: Engine | None = None) -> list[Shortage]:
    """Every live product at or under ``catalog.low_stock``, least stock first."""
    conf = get_settings().catalog
    with (engine or default_engine()).connect() as conn:
        rows = store.inventory.low_stock(conn, conf.low_stock)
    return [
        Shortage(row["id"], row["name"], int(row["quantity"]), level(int(row["quantity"]), conf))
        for row in rows
    ]


def report_csv(engine: Engine | None = None) -> bytes:
    """The inventory report: one CSV row per live product (:data:`REPORT_COLUMNS`)."""
    conf = get_settings().catalog
    with (engine or default_engine()).connect() as conn:
        rows = store.inventory.inventory_report(conn)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        quantity = int(row["quantity"])
        writer.writerow(
            (
                row["id"],
                row["name"],
                row["category"],
                row["price"],
                quantity,
                level(quantity, conf).value,
                row["stock_value"],
            )
        )
    return out.getvalue().encode()
