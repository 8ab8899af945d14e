"""The sample catalog's tables, emptied between tests that seed it."""

from __future__ import annotations

from sqlalchemy import text

from app.db import engine

#: Every table of the sample catalog (migration 0010), children first.
TABLES = (
    "catalog_search_documents, catalog_cursors, catalog_audit_log, catalog_order_lines, "
    "catalog_orders, catalog_customers, catalog_inventory, catalog_products, catalog_categories"
)


def empty_catalog_tables() -> None:
    """Every catalog row gone, and its ids counted from 1 again."""
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY"))
