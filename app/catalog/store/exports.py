"""The data exports' statements: the products or orders an export's filters select,
streamed through a server-side cursor, and how many rows that is."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, text

#: The filters both export statements take: NULL leaves a filter out.
_PRODUCT_FILTER = """
WHERE (CAST(:category_id AS bigint) IS NULL OR p.category_id = CAST(:category_id AS bigint))
  AND (CAST(:updated_since AS timestamptz) IS NULL
       OR p.updated_at >= CAST(:updated_since AS timestamptz))
  AND (CAST(:include_deleted AS boolean) OR p.deleted_at IS NULL)
"""
_ORDER_FILTER = """
WHERE (CAST(:status AS text) IS NULL OR o.status = CAST(:status AS text))
  AND (CAST(:customer_id AS bigint) IS NULL OR o.customer_id = CAST(:customer_id AS bigint))
  AND (CAST(:created_since AS timestamptz) IS NULL
       OR o.created_at >= CAST(:created_since AS timestamptz))
  AND (CAST(:created_before AS timestamptz) IS NULL
       OR o.created_at < CAST(:created_before AS timestamptz))
"""
#: -- export_products --: the products an export's filters select, by id.
EXPORT_PRODUCTS = text(f"""
SELECT p.id, p.category_id, c.name AS category, p.name, p.description, p.price,
       p.popularity_score, i.quantity, p.created_at, p.updated_at, p.deleted_at
FROM catalog_products p
JOIN catalog_categories c ON c.id = p.category_id
LEFT JOIN catalog_inventory i ON i.product_id = p.id
{_PRODUCT_FILTER}
ORDER BY p.id
""")
#: -- count_export_products --: how many rows ``export_products`` gives.
COUNT_EXPORT_PRODUCTS = text(f"SELECT count(*) FROM catalog_products p {_PRODUCT_FILTER}")
#: -- export_orders --: the orders an export's filters select, by id, with their customer.
EXPORT_ORDERS = text(f"""
SELECT o.id, o.customer_id, cu.email AS customer_email, o.status, o.total,
       (SELECT count(*) FROM catalog_order_lines l WHERE l.order_id = o.id) AS lines,
       o.created_at
FROM catalog_orders o
JOIN catalog_customers cu ON cu.id = o.customer_id
{_ORDER_FILTER}
ORDER BY o.id
""")
#: -- count_export_orders --: how many rows ``export_orders`` gives.
COUNT_EXPORT_ORDERS = text(f"SELECT count(*) FROM catalog_orders o {_ORDER_FILTER}")
#: Statement pairs (rows, count) of each export kind.
EXPORTS = {
    "products": (EXPORT_PRODUCTS, COUNT_EXPORT_PRODUCTS),
    "orders": (EXPORT_ORDERS, COUNT_EXPORT_ORDERS),
}


def export_count(conn: Connection, kind: str, filters: Mapping[str, Any]) -> int:
    """How many rows the export of ``kind`` (a key of :data:`EXPORTS`) gives."""
    return int(conn.execute(EXPORTS[kind][1], dict(filters)).scalar_one())


def export_rows(
    conn: Connection, kind: str, filters: Mapping[str, Any], chunk_rows: int
) -> Iterator[list[dict[str, Any]]]:
    """The export's rows, ``chunk_rows`` at a time, through a server-side cursor: memory
    holds one chunk, whatever the result's size. ``conn`` must stay in its transaction."""
    streamed = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows)
    result = streamed.execute(EXPORTS[kind][0], dict(filters)).mappings()
    for chunk in result.partitions(chunk_rows):
        yield [dict(row) for row in chunk]
