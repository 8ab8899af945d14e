"""The sample catalog's tables, emptied between tests that seed it, and what its jobs leave."""

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


def forget_catalog() -> None:
    """No catalog rows, catalog jobs, catalog files, stock alerts or catalog cache keys,
    whichever module (or broker's run of one) left them."""
    from app.catalog import cache
    from app.services.catalog import STOCK_ALERT_PREFIX

    empty_catalog_tables()
    with engine().begin() as conn:
        conn.execute(text("DELETE FROM stored_files WHERE name LIKE 'catalog/%'"))
        conn.execute(text("DELETE FROM alerts WHERE key LIKE :p"), {"p": f"{STOCK_ALERT_PREFIX}%"})
        conn.execute(
            text(
                "DELETE FROM job_events WHERE job_id IN "
                "(SELECT id FROM jobs WHERE handler LIKE 'catalog.%')"
            )
        )
        conn.execute(text("DELETE FROM jobs WHERE handler LIKE 'catalog.%'"))
    client = cache.client()
    for key in client.scan_iter(match=f"{cache.PREFIX}*"):
        client.delete(key)
