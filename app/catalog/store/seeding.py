"""Loading the sample data: the seed's lock, its categories, and bulk inserts of
products, stock, customers, orders and order lines.

Bulk inserts pass each column as one array and ``unnest`` them: one statement per
batch, whatever its size. Ids of rows that others refer to are reserved from their
sequence first, so that a batch of products and its inventory, or an order and its
lines, go in without a round trip per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, TextClause, text

#: Tables whose ids are reserved before their rows are inserted.
RESERVABLE = ("catalog_products", "catalog_customers", "catalog_orders")

#: -- lock_seeding --: one seed at a time, until the transaction ends.
LOCK_SEEDING = text("SELECT pg_advisory_xact_lock(hashtextextended('conveyor.catalog.seed', 0))")
#: -- any_product --: whether the catalog has a product at all.
ANY_PRODUCT = text("SELECT EXISTS (SELECT 1 FROM catalog_products)")
#: -- ensure_category --: the category of ``slug``, inserted if missing; ``created`` says so.
ENSURE_CATEGORY = text("""
INSERT INTO catalog_categories AS c (parent_id, name, slug)
VALUES (:parent_id, :name, :slug)
ON CONFLICT (slug) DO UPDATE SET slug = EXCLUDED.slug
RETURNING c.id, (xmax = 0) AS created
""")
#: -- reserve_ids --: ``:n`` ids of a table's identity sequence, for rows inserted next.
RESERVE_IDS = {
    table: text(
        f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)"
    )
    for table in RESERVABLE
}
#: -- insert_products --: a batch of products, their ids reserved.
INSERT_PRODUCTS = text("""
INSERT INTO catalog_products (id, category_id, name, description, price, popularity_score,
                              created_at)
SELECT * FROM unnest(CAST(:id AS bigint[]), CAST(:category_id AS bigint[]),
                     CAST(:name AS text[]), CAST(:description AS text[]),
                     CAST(:price AS numeric[]), CAST(:popularity_score AS float8[]),
                     CAST(:created_at AS timestamptz[]))
""")
#: -- insert_inventory --: the stock of a batch of products.
INSERT_INVENTORY = text("""
INSERT INTO catalog_inventory (product_id, quantity)
SELECT * FROM unnest(CAST(:product_id AS bigint[]), CAST(:quantity AS int[]))
""")
#: -- insert_customers --: a batch of customers, their ids reserved.
INSERT_CUSTOMERS = text("""
INSERT INTO catalog_customers (id, name, email, created_at)
SELECT * FROM unnest(CAST(:id AS bigint[]), CAST(:name AS text[]), CAST(:email AS text[]),
                     CAST(:created_at AS timestamptz[]))
""")
#: -- insert_orders --: a batch of orders, their ids reserved.
INSERT_ORDERS = text("""
INSERT INTO catalog_orders (id, customer_id, status, total, created_at)
SELECT * FROM unnest(CAST(:id AS bigint[]), CAST(:customer_id AS bigint[]),
                     CAST(:status AS text[]), CAST(:total AS numeric[]),
                     CAST(:created_at AS timestamptz[]))
""")
#: -- insert_order_lines --: the lines of a batch of orders.
INSERT_ORDER_LINES = text("""
INSERT INTO catalog_order_lines (order_id, product_id, quantity, unit_price)
SELECT * FROM unnest(CAST(:order_id AS bigint[]), CAST(:product_id AS bigint[]),
                     CAST(:quantity AS int[]), CAST(:unit_price AS numeric[]))
""")


def _run(conn: Connection, statement: TextClause, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` with one ``unnest`` statement: each column becomes one array."""
    if not rows:
        return 0
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    conn.execute(statement, columns)
    return len(rows)


def lock_seeding(conn: Connection) -> None:
    """Wait until no other seed runs; the lock ends with ``conn``'s transaction."""
    conn.execute(LOCK_SEEDING)


def has_products(conn: Connection) -> bool:
    """Whether any product exists (soft-deleted ones included)."""
    return bool(conn.execute(ANY_PRODUCT).scalar_one())


def ensure_category(
    conn: Connection, slug: str, name: str, parent_id: int | None
) -> tuple[int, bool]:
    """The id of the category at ``slug``, inserting it if missing, and whether it was."""
    params = {"slug": slug, "name": name, "parent_id": parent_id}
    row = conn.execute(ENSURE_CATEGORY, params).one()
    return int(row.id), bool(row.created)


def reserve_ids(conn: Connection, table: str, n: int) -> list[int]:
    """``n`` fresh ids of ``table`` (one of :data:`RESERVABLE`), ascending."""
    if n <= 0:
        return []
    return sorted(int(i) for i in conn.execute(RESERVE_IDS[table], {"n": n}).scalars())


def insert_products(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert products (id, category_id, name, description, price, popularity_score,
    created_at); their ``updated_at`` is the transaction's time."""
    return _run(conn, INSERT_PRODUCTS, rows)


def insert_inventory(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert stock rows (product_id, quantity)."""
    return _run(conn, INSERT_INVENTORY, rows)


def insert_customers(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert customers (id, name, email, created_at)."""
    return _run(conn, INSERT_CUSTOMERS, rows)


def insert_orders(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert orders (id, customer_id, status, total, created_at)."""
    return _run(conn, INSERT_ORDERS, rows)


def insert_order_lines(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert order lines (order_id, product_id, quantity, unit_price)."""
    return _run(conn, INSERT_ORDER_LINES, rows)
