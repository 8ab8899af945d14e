"""The catalog as a whole: the rows of each of its tables, the database's time, and the
planner's statistics after a bulk load."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

#: -- database_now --: the transaction's time, the one ``now()`` stamps rows with.
NOW = text("SELECT now()")
#: -- catalog_counts --: rows in each table (products: soft-deleted ones included).
COUNTS = text("""
SELECT (SELECT count(*) FROM catalog_categories) AS categories,
       (SELECT count(*) FROM catalog_products) AS products,
       (SELECT count(*) FROM catalog_products WHERE deleted_at IS NULL) AS active_products,
       (SELECT count(*) FROM catalog_inventory) AS inventory,
       (SELECT count(*) FROM catalog_customers) AS customers,
       (SELECT count(*) FROM catalog_orders) AS orders,
       (SELECT count(*) FROM catalog_order_lines) AS order_lines,
       (SELECT count(*) FROM catalog_search_documents) AS documents
""")
#: -- analyze_catalog --: fresh planner statistics after a bulk load (skips tables not ours).
ANALYZE = text("""
ANALYZE catalog_categories, catalog_products, catalog_inventory, catalog_customers,
        catalog_orders, catalog_order_lines
""")


def now(conn: Connection) -> datetime:
    """The database's time for this transaction (what ``now()`` stamps rows with)."""
    value: datetime = conn.execute(NOW).scalar_one()
    return value


def counts(conn: Connection) -> dict[str, int]:
    """Rows in each catalog table, by name (``active_products``: not soft-deleted)."""
    return {key: int(value) for key, value in conn.execute(COUNTS).mappings().one().items()}


def analyze(conn: Connection) -> None:
    """Refresh the planner's statistics of the seeded tables (its own rows included)."""
    conn.execute(ANALYZE)
