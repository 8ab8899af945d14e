"""Stock (``catalog_inventory``): the levels of live products, counted and listed for
the cache, the stock monitor and the weekly report, and a product's stock set."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

#: -- stock_counts --: live products in stock, out of stock, at most ``:low`` and at
#: most ``:critical`` (and more than 0).
STOCK_COUNTS = text("""
SELECT count(*) AS products,
       count(*) FILTER (WHERE coalesce(i.quantity, 0) > 0) AS in_stock,
       count(*) FILTER (WHERE coalesce(i.quantity, 0) = 0) AS out_of_stock,
       count(*) FILTER (WHERE coalesce(i.quantity, 0) BETWEEN 1 AND :critical) AS critical,
       count(*) FILTER (WHERE coalesce(i.quantity, 0) BETWEEN :critical + 1 AND :low) AS low
FROM catalog_products p
LEFT JOIN catalog_inventory i ON i.product_id = p.id
WHERE p.deleted_at IS NULL
""")
#: -- low_stock --: live products with at most ``:low`` in stock, least first.
LOW_STOCK = text("""
SELECT p.id, p.name, coalesce(i.quantity, 0) AS quantity
FROM catalog_products p
LEFT JOIN catalog_inventory i ON i.product_id = p.id
WHERE p.deleted_at IS NULL AND coalesce(i.quantity, 0) <= :low
ORDER BY quantity, p.id
""")
#: -- set_stock --: a product's stock (a restock or a sale).
SET_STOCK = text("""
UPDATE catalog_inventory SET quantity = :quantity, updated_at = now()
WHERE product_id = :product_id
RETURNING product_id
""")
#: -- inventory_report --: every live product with its category, price and stock.
INVENTORY_REPORT = text("""
SELECT p.id, p.name, c.name AS category, p.price, coalesce(i.quantity, 0) AS quantity,
       coalesce(i.quantity, 0) * p.price AS stock_value
FROM catalog_products p
JOIN catalog_categories c ON c.id = p.category_id
LEFT JOIN catalog_inventory i ON i.product_id = p.id
WHERE p.deleted_at IS NULL
ORDER BY c.name, p.name, p.id
""")


def stock_counts(conn: Connection, *, critical: int, low: int) -> dict[str, int]:
    """Live products, in stock, out of stock, critical (1..critical), low (critical+1..low)."""
    row = conn.execute(STOCK_COUNTS, {"critical": critical, "low": low}).mappings().one()
    return {key: int(value) for key, value in row.items()}


def low_stock(conn: Connection, low: int) -> list[dict[str, Any]]:
    """Live products with at most ``low`` in stock (id, name, quantity), least first."""
    return [dict(row) for row in conn.execute(LOW_STOCK, {"low": low}).mappings()]


def set_stock(conn: Connection, product_id: int, quantity: int) -> bool:
    """Set a product's stock; False if it has no stock row."""
    params = {"product_id": product_id, "quantity": quantity}
    return conn.execute(SET_STOCK, params).first() is not None


def inventory_report(conn: Connection) -> list[dict[str, Any]]:
    """Every live product: id, name, category, price, quantity, stock_value."""
    return [dict(row) for row in conn.execute(INVENTORY_REPORT).mappings()]
