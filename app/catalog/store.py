"""Every statement on the catalog's tables, named, and the functions that run them.

As the alerts keep theirs in :mod:`app.services.alert_store`, the catalog keeps its SQL
here: each statement is a constant with a line saying what it does, run through
SQLAlchemy on the caller's connection, so that one transaction spans what the caller
does (a whole seed, one batch of a sync). Bulk inserts pass each column as one array
and ``unnest`` them: one statement per batch, whatever its size. Ids of rows that
others refer to are reserved from their sequence first, so that a batch of products
and its inventory, or an order and its lines, go in without a round trip per row.
Migrations aside (``0010_catalog``), no other module writes SQL on these tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, TextClause, text

#: Order states, in the order an order goes through them (``ck_catalog_orders_status``).
ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled")
#: The text search configuration of documents and queries alike (stemming, stop words).
TEXT_SEARCH_CONFIG = "english"
#: Tables whose ids are reserved before their rows are inserted.
RESERVABLE = ("catalog_products", "catalog_customers", "catalog_orders")

#: -- lock_seeding --: one seed at a time, until the transaction ends.
LOCK_SEEDING = text("SELECT pg_advisory_xact_lock(hashtextextended('conveyor.catalog.seed', 0))")
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
#: -- any_product --: whether the catalog has a product at all.
ANY_PRODUCT = text("SELECT EXISTS (SELECT 1 FROM catalog_products)")
#: -- analyze_catalog --: fresh planner statistics after a bulk load (skips tables not ours).
ANALYZE = text("""
ANALYZE catalog_categories, catalog_products, catalog_inventory, catalog_customers,
        catalog_orders, catalog_order_lines
""")
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
#: -- record_audit --: one entry of the domain's audit log.
RECORD_AUDIT = text("""
INSERT INTO catalog_audit_log (entity, entity_id, action, detail)
VALUES (:entity, :entity_id, :action, CAST(:detail AS jsonb))
""")
#: -- get_product --: one product with its category's name and its stock.
GET_PRODUCT = text("""
SELECT p.id, p.category_id, c.name AS category, p.name, p.description, p.price,
       p.popularity_score, p.created_at, p.updated_at, p.deleted_at, i.quantity
FROM catalog_products p
JOIN catalog_categories c ON c.id = p.category_id
LEFT JOIN catalog_inventory i ON i.product_id = p.id
WHERE p.id = :id
""")
#: -- update_product --: a live product's new name or description (NULL: unchanged); it
#: is due for the search index again.
UPDATE_PRODUCT = text("""
UPDATE catalog_products
SET name = coalesce(:name, name), description = coalesce(:description, description),
    updated_at = now()
WHERE id = :id AND deleted_at IS NULL
RETURNING id
""")
#: -- soft_delete_product --: mark a live product deleted (the cleanup removes it later).
SOFT_DELETE_PRODUCT = text("""
UPDATE catalog_products SET deleted_at = now(), updated_at = now()
WHERE id = :id AND deleted_at IS NULL
RETURNING id
""")
#: -- load_cursor --: where an incremental job stopped (NULL: from the start).
LOAD_CURSOR = text("SELECT position FROM catalog_cursors WHERE name = :name")
#: -- save_cursor --: move a job's cursor forward, never back (two runs may race).
SAVE_CURSOR = text("""
INSERT INTO catalog_cursors AS c (name, position) VALUES (:name, :position)
ON CONFLICT (name) DO UPDATE SET position = greatest(c.position, EXCLUDED.position),
                                 updated_at = now()
RETURNING c.position
""")
#: -- sync_search_batch --: the next ``:limit`` products after (``:after_at``, ``:after_id``)
#: by (updated_at, id): a live one's document is written unless it was built from the
#: same ``updated_at``, a deleted one's removed. Counts what changed, and the last key.
SYNC_SEARCH_BATCH = text(f"""
WITH batch AS (
    SELECT p.id, p.name, p.description, p.updated_at, p.deleted_at, c.name AS category
    FROM catalog_products p
    LEFT JOIN catalog_categories c ON c.id = p.category_id
    WHERE (p.updated_at, p.id) > (coalesce(CAST(:after_at AS timestamptz), '-infinity'),
                                  CAST(:after_id AS bigint))
    ORDER BY p.updated_at, p.id
    LIMIT :limit
), indexed AS (
    INSERT INTO catalog_search_documents AS d (product_id, document, updated_at)
    SELECT id,
           setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', name), 'A')
           || setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', description), 'B')
           || setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', coalesce(category, '')), 'C'),
           updated_at
    FROM batch WHERE deleted_at IS NULL
    ON CONFLICT (product_id) DO UPDATE
        SET document = EXCLUDED.document, updated_at = EXCLUDED.updated_at
        WHERE d.updated_at IS DISTINCT FROM EXCLUDED.updated_at
    RETURNING 1
), removed AS (
    DELETE FROM catalog_search_documents d USING batch b
    WHERE d.product_id = b.id AND b.deleted_at IS NOT NULL
    RETURNING 1
), last AS (
    SELECT updated_at, id FROM batch ORDER BY updated_at DESC, id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM batch) AS read,
       (SELECT count(*) FROM indexed) AS indexed,
       (SELECT count(*) FROM removed) AS removed,
       (SELECT updated_at FROM last) AS last_at,
       (SELECT id FROM last) AS last_id
""")
#: -- search_products --: live products whose document matches ``:q`` (web search syntax:
#: words, "phrases", or, -word), best ``ts_rank`` first, then the most popular.
SEARCH = text(f"""
SELECT p.id, p.name, c.name AS category, p.price, p.popularity_score,
       ts_rank(d.document, q.query) AS rank
FROM websearch_to_tsquery('{TEXT_SEARCH_CONFIG}', :q) AS q(query)
JOIN catalog_search_documents d ON d.document @@ q.query
JOIN catalog_products p ON p.id = d.product_id AND p.deleted_at IS NULL
LEFT JOIN catalog_categories c ON c.id = p.category_id
ORDER BY rank DESC, p.popularity_score DESC, p.id
LIMIT :limit
""")
#: -- indexed_products --: which of ``:ids`` have a search document.
INDEXED = text("""
SELECT product_id FROM catalog_search_documents WHERE product_id = ANY(CAST(:ids AS bigint[]))
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


def now(conn: Connection) -> datetime:
    """The database's time for this transaction (what ``now()`` stamps rows with)."""
    value: datetime = conn.execute(NOW).scalar_one()
    return value


def counts(conn: Connection) -> dict[str, int]:
    """Rows in each catalog table, by name (``active_products``: not soft-deleted)."""
    return {key: int(value) for key, value in conn.execute(COUNTS).mappings().one().items()}


def has_products(conn: Connection) -> bool:
    """Whether any product exists (soft-deleted ones included)."""
    return bool(conn.execute(ANY_PRODUCT).scalar_one())


def analyze(conn: Connection) -> None:
    """Refresh the planner's statistics of the seeded tables (its own rows included)."""
    conn.execute(ANALYZE)


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


def record_audit(
    conn: Connection,
    entity: str,
    entity_id: str | int | None,
    action: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one entry to the domain's audit log, stamped with the transaction's time."""
    params = {
        "entity": entity,
        "entity_id": None if entity_id is None else str(entity_id),
        "action": action,
        "detail": None if detail is None else json.dumps(detail, default=str),
    }
    conn.execute(RECORD_AUDIT, params)


def product(conn: Connection, product_id: int) -> dict[str, Any] | None:
    """One product with ``category`` (its name) and ``quantity`` (its stock), or None."""
    row = conn.execute(GET_PRODUCT, {"id": product_id}).mappings().first()
    return None if row is None else dict(row)


def update_product(
    conn: Connection, product_id: int, *, name: str | None = None, description: str | None = None
) -> bool:
    """Give a live product a new name or description, audited; False if there is none
    (or it is deleted)."""
    changes = {
        key: value
        for key, value in (("name", name), ("description", description))
        if value is not None
    }
    if not changes:
        raise ValueError(f"product {product_id}: give a name or a description to update")
    params = {"id": product_id, "name": name, "description": description}
    done = conn.execute(UPDATE_PRODUCT, params).first() is not None
    if done:
        record_audit(conn, "product", product_id, "update", changes)
    return done


def soft_delete_product(conn: Connection, product_id: int) -> bool:
    """Mark a live product deleted, audited; False if there is none (or it already is)."""
    done = conn.execute(SOFT_DELETE_PRODUCT, {"id": product_id}).first() is not None
    if done:
        record_audit(conn, "product", product_id, "delete")
    return done


def load_cursor(conn: Connection, name: str) -> datetime | None:
    """Where the incremental job ``name`` stopped, or None before its first run."""
    value: datetime | None = conn.execute(LOAD_CURSOR, {"name": name}).scalar()
    return value


def save_cursor(conn: Connection, name: str, position: datetime | None) -> datetime | None:
    """Move ``name``'s cursor to ``position`` unless it is already further; where it is."""
    value: datetime | None = conn.execute(
        SAVE_CURSOR, {"name": name, "position": position}
    ).scalar_one()
    return value


def sync_search_batch(
    conn: Connection, after: tuple[datetime | None, int], limit: int
) -> dict[str, Any]:
    """Index or remove the next ``limit`` products after key ``after`` (updated_at, id):
    ``read``, ``indexed``, ``removed``, and ``last_at``/``last_id`` (None if none was read)."""
    params = {"after_at": after[0], "after_id": after[1], "limit": limit}
    return dict(conn.execute(SYNC_SEARCH_BATCH, params).mappings().one())


def search(conn: Connection, q: str, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` best matches of ``q``: id, name, category, price, popularity_score, rank."""
    return [dict(row) for row in conn.execute(SEARCH, {"q": q, "limit": limit}).mappings()]


def indexed(conn: Connection, product_ids: Sequence[int]) -> set[int]:
    """Which of ``product_ids`` the search index has a document for."""
    return {int(i) for i in conn.execute(INDEXED, {"ids": list(product_ids)}).scalars()}


# -- cleanup, exports and reports (tasks/cleanup.py, tasks/exports.py, tasks/catalog_reports.py)

#: The condition of a product the cleanup may delete: changed last before ``:cutoff``
#: (a soft delete stamps ``updated_at`` too) and on no order line, which keeps it.
_INACTIVE = """
p.updated_at < :cutoff
AND NOT EXISTS (SELECT 1 FROM catalog_order_lines l WHERE l.product_id = p.id)
"""
#: -- count_inactive_products --: products past ``:cutoff``: deletable ones (live and
#: soft-deleted apart), and those kept because an order line names them.
COUNT_INACTIVE = text("""
SELECT count(*) FILTER (WHERE NOT referenced AND deleted_at IS NULL) AS live,
       count(*) FILTER (WHERE NOT referenced AND deleted_at IS NOT NULL) AS soft_deleted,
       count(*) FILTER (WHERE referenced) AS referenced
FROM (SELECT p.deleted_at,
             EXISTS (SELECT 1 FROM catalog_order_lines l WHERE l.product_id = p.id) AS referenced
      FROM catalog_products p WHERE p.updated_at < :cutoff) AS stale
""")
#: -- delete_inactive_products --: up to ``:limit`` inactive products, lowest ids first
#: (their stock and search document go by cascade); rows another transaction holds are
#: left for the next batch. Returns how many went, live and soft-deleted apart.
DELETE_INACTIVE = text(f"""
WITH doomed AS (
    SELECT p.id FROM catalog_products p WHERE {_INACTIVE}
    ORDER BY p.id LIMIT :limit FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM catalog_products p USING doomed d WHERE p.id = d.id RETURNING p.deleted_at
)
SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS live,
       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS soft_deleted
FROM gone
""")
#: -- purge_soft_deleted_products --: up to ``:limit`` products soft-deleted before
#: ``:cutoff`` and on no order line.
PURGE_SOFT_DELETED = text("""
WITH doomed AS (
    SELECT p.id FROM catalog_products p
    WHERE p.deleted_at < :cutoff
      AND NOT EXISTS (SELECT 1 FROM catalog_order_lines l WHERE l.product_id = p.id)
    ORDER BY p.id LIMIT :limit FOR UPDATE SKIP LOCKED
)
DELETE FROM catalog_products p USING doomed d WHERE p.id = d.id
""")
#: -- purge_audit_log --: up to ``:limit`` audit entries written before ``:cutoff``.
PURGE_AUDIT = text("""
DELETE FROM catalog_audit_log
WHERE id IN (SELECT id FROM catalog_audit_log WHERE at < :cutoff ORDER BY id LIMIT :limit)
""")
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
#: Statement pairs (rows, count) of each export kind.
EXPORTS = {
    "products": (EXPORT_PRODUCTS, COUNT_EXPORT_PRODUCTS),
    "orders": (EXPORT_ORDERS, COUNT_EXPORT_ORDERS),
}


def count_inactive(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """Products changed last before ``cutoff``: ``live`` and ``soft_deleted`` ones the
    cleanup would delete, and ``referenced`` ones it keeps (an order line names them)."""
    row = conn.execute(COUNT_INACTIVE, {"cutoff": cutoff}).mappings().one()
    return {key: int(value) for key, value in row.items()}


def delete_inactive(conn: Connection, cutoff: datetime, limit: int) -> dict[str, int]:
    """Delete up to ``limit`` inactive products (see :func:`count_inactive`); how many
    ``live`` and ``soft_deleted`` ones went."""
    row = conn.execute(DELETE_INACTIVE, {"cutoff": cutoff, "limit": limit}).mappings().one()
    return {key: int(value) for key, value in row.items()}


def purge_soft_deleted(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` products soft-deleted before ``cutoff`` (on no order line)."""
    return conn.execute(PURGE_SOFT_DELETED, {"cutoff": cutoff, "limit": limit}).rowcount


def purge_audit(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` audit entries written before ``cutoff``."""
    return conn.execute(PURGE_AUDIT, {"cutoff": cutoff, "limit": limit}).rowcount


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


def report_by_status(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Orders placed in [``start``, ``end``) per status: status, orders, total."""
    params = {"start": start, "end": end}
    return [dict(row) for row in conn.execute(REPORT_BY_STATUS, params).mappings()]


def report_products_sold(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per product sold in [``start``, ``end``): product_id, name, quantity, revenue."""
    params = {"start": start, "end": end}
    return [dict(row) for row in conn.execute(REPORT_PRODUCTS_SOLD, params).mappings()]


# -- The recurring jobs' statements (tasks.catalog, app.services.catalog) --------------

#: -- popular_products --: the ``:limit`` most popular live products, with their stock.
POPULAR_PRODUCTS = text("""
SELECT p.id, p.name, c.name AS category, p.price, p.popularity_score,
       coalesce(i.quantity, 0) AS quantity
FROM catalog_products p
JOIN catalog_categories c ON c.id = p.category_id
LEFT JOIN catalog_inventory i ON i.product_id = p.id
WHERE p.deleted_at IS NULL
ORDER BY p.popularity_score DESC, p.id
LIMIT :limit
""")
#: -- category_tree --: every category with its parent and its live products.
CATEGORY_TREE = text("""
SELECT c.id, c.parent_id, c.name, c.slug, count(p.id) AS products
FROM catalog_categories c
LEFT JOIN catalog_products p ON p.category_id = c.id AND p.deleted_at IS NULL
GROUP BY c.id
ORDER BY c.slug
""")
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
#: -- update_popularity --: each live product's score, the units sold since ``:since``
#: (cancelled orders left out) plus a tenth of a point per unit in stock, capped at 10;
#: only the scores that change are written, and ``updated_at`` is left alone (the score
#: is not in the search document).
UPDATE_POPULARITY = text("""
WITH sold AS (
    SELECT l.product_id, sum(l.quantity) AS units
    FROM catalog_order_lines l
    JOIN catalog_orders o ON o.id = l.order_id
    WHERE o.created_at >= :since AND o.status <> 'cancelled'
    GROUP BY l.product_id
), scored AS (
    SELECT p.id, coalesce(s.units, 0) + least(coalesce(i.quantity, 0), 100) / 10.0 AS score
    FROM catalog_products p
    LEFT JOIN sold s ON s.product_id = p.id
    LEFT JOIN catalog_inventory i ON i.product_id = p.id
    WHERE p.deleted_at IS NULL
)
UPDATE catalog_products p SET popularity_score = scored.score
FROM scored
WHERE p.id = scored.id AND p.popularity_score IS DISTINCT FROM scored.score
RETURNING p.id
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
#: -- purge_audit_log --: audit entries older than ``:cutoff``.
PURGE_AUDIT_LOG = text("DELETE FROM catalog_audit_log WHERE at < :cutoff")
#: -- purge_cancelled_orders --: cancelled orders placed before ``:cutoff`` (their lines go
#: with them).
PURGE_CANCELLED_ORDERS = text("""
DELETE FROM catalog_orders WHERE status = 'cancelled' AND created_at < :cutoff
""")
#: -- purge_deleted_products --: products soft-deleted before ``:cutoff`` that no order line
#: refers to (their stock and search document go with them).
PURGE_DELETED_PRODUCTS = text("""
DELETE FROM catalog_products p
WHERE p.deleted_at < :cutoff
  AND NOT EXISTS (SELECT 1 FROM catalog_order_lines l WHERE l.product_id = p.id)
""")


def popular_products(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most popular live products: id, name, category, price, score, quantity."""
    return [dict(row) for row in conn.execute(POPULAR_PRODUCTS, {"limit": limit}).mappings()]


def category_tree(conn: Connection) -> list[dict[str, Any]]:
    """Every category (id, parent_id, name, slug) with its live ``products``, by slug."""
    return [dict(row) for row in conn.execute(CATEGORY_TREE).mappings()]


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


def update_popularity(conn: Connection, since: datetime) -> int:
    """Score every live product from its sales since ``since`` and its stock; how many
    scores changed."""
    return len(conn.execute(UPDATE_POPULARITY, {"since": since}).all())


def inventory_report(conn: Connection) -> list[dict[str, Any]]:
    """Every live product: id, name, category, price, quantity, stock_value."""
    return [dict(row) for row in conn.execute(INVENTORY_REPORT).mappings()]


def purge_old(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """Delete audit entries, cancelled orders and soft-deleted products older than
    ``cutoff`` (a product still in an order line stays); how many of each."""
    return {
        "audit_entries": conn.execute(PURGE_AUDIT_LOG, {"cutoff": cutoff}).rowcount,
        "cancelled_orders": conn.execute(PURGE_CANCELLED_ORDERS, {"cutoff": cutoff}).rowcount,
        "deleted_products": conn.execute(PURGE_DELETED_PRODUCTS, {"cutoff": cutoff}).rowcount,
    }
