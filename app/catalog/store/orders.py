"""Orders (``catalog_orders``, ``catalog_order_lines``): their states, the sales figures
of the analytics and the sales reports (cancelled orders are left out of what was sold),
and the monthly cleanup's delete of old cancelled orders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

#: Order states, in the order an order goes through them (``ck_catalog_orders_status``).
ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled")

#: -- purge_cancelled_orders --: cancelled orders placed before ``:cutoff``, their lines
#: with them (cascade); counts both (the statement's snapshot still sees the lines).
PURGE_CANCELLED_ORDERS = text("""
WITH gone AS (
    DELETE FROM catalog_orders WHERE status = 'cancelled' AND created_at < :cutoff
    RETURNING id
)
SELECT (SELECT count(*) FROM gone) AS cancelled_orders,
       (SELECT count(*) FROM catalog_order_lines l JOIN gone g ON g.id = l.order_id)
           AS order_lines
""")
#: -- report_orders_by_status --: orders placed in [``:start``, ``:end``) per status.
REPORT_BY_STATUS = text("""
SELECT status, count(*) AS orders, coalesce(sum(total), 0) AS total
FROM catalog_orders WHERE created_at >= :start AND created_at < :end
GROUP BY status ORDER BY status
""")
#: -- report_products_sold --: what each product sold in orders placed in
#: [``:start``, ``:end``), cancelled ones left out; best revenue first.
REPORT_PRODUCTS_SOLD = text("""
SELECT l.product_id, p.name, sum(l.quantity) AS quantity,
       sum(l.quantity * l.unit_price) AS revenue
FROM catalog_order_lines l
JOIN catalog_orders o ON o.id = l.order_id
JOIN catalog_products p ON p.id = l.product_id
WHERE o.created_at >= :start AND o.created_at < :end AND o.status <> 'cancelled'
GROUP BY l.product_id, p.name
ORDER BY revenue DESC, l.product_id
""")
#: -- sales_per_day --: orders, units and revenue per UTC day in [``:since``, ``:until``),
#: cancelled orders left out.
SALES_PER_DAY = text("""
SELECT (o.created_at AT TIME ZONE 'UTC')::date AS day, count(DISTINCT o.id) AS orders,
       coalesce(sum(l.quantity), 0) AS units,
       coalesce(sum(l.quantity * l.unit_price), 0) AS revenue
FROM catalog_orders o
JOIN catalog_order_lines l ON l.order_id = o.id
WHERE o.created_at >= :since AND o.created_at < :until AND o.status <> 'cancelled'
GROUP BY day
ORDER BY day
""")
#: -- top_products --: the ``:limit`` products sold most in [``:since``, ``:until``).
TOP_PRODUCTS = text("""
SELECT p.id, p.name, sum(l.quantity) AS units, sum(l.quantity * l.unit_price) AS revenue
FROM catalog_order_lines l
JOIN catalog_orders o ON o.id = l.order_id
JOIN catalog_products p ON p.id = l.product_id
WHERE o.created_at >= :since AND o.created_at < :until AND o.status <> 'cancelled'
GROUP BY p.id
ORDER BY units DESC, revenue DESC, p.id
LIMIT :limit
""")
#: -- revenue_by_category --: revenue per category in [``:since``, ``:until``).
REVENUE_BY_CATEGORY = text("""
SELECT c.name AS category, sum(l.quantity * l.unit_price) AS revenue, sum(l.quantity) AS units
FROM catalog_order_lines l
JOIN catalog_orders o ON o.id = l.order_id
JOIN catalog_products p ON p.id = l.product_id
JOIN catalog_categories c ON c.id = p.category_id
WHERE o.created_at >= :since AND o.created_at < :until AND o.status <> 'cancelled'
GROUP BY c.name
ORDER BY revenue DESC, c.name
""")


def report_by_status(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Orders placed in [``start``, ``end``) per status: status, orders, total."""
    params = {"start": start, "end": end}
    return [dict(row) for row in conn.execute(REPORT_BY_STATUS, params).mappings()]


def report_products_sold(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per product sold in [``start``, ``end``): product_id, name, quantity, revenue."""
    params = {"start": start, "end": end}
    return [dict(row) for row in conn.execute(REPORT_PRODUCTS_SOLD, params).mappings()]


def sales_per_day(conn: Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Orders, units and revenue per UTC day in [since, until)."""
    params = {"since": since, "until": until}
    return [dict(row) for row in conn.execute(SALES_PER_DAY, params).mappings()]


def top_products(
    conn: Connection, since: datetime, until: datetime, limit: int
) -> list[dict[str, Any]]:
    """The ``limit`` products sold most in [since, until): id, name, units, revenue."""
    params = {"since": since, "until": until, "limit": limit}
    return [dict(row) for row in conn.execute(TOP_PRODUCTS, params).mappings()]


def revenue_by_category(conn: Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Revenue and units per category in [since, until), most revenue first."""
    params = {"since": since, "until": until}
    return [dict(row) for row in conn.execute(REVENUE_BY_CATEGORY, params).mappings()]


def purge_cancelled_orders(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """Delete the cancelled orders placed before ``cutoff``, with their lines; how many
    ``cancelled_orders`` and ``order_lines`` went."""
    row = conn.execute(PURGE_CANCELLED_ORDERS, {"cutoff": cutoff}).mappings().one()
    return {key: int(value) for key, value in row.items()}
