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
from collections.abc import Mapping, Sequence
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
