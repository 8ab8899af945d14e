"""Products (``catalog_products``) and the category tree: a product read, edited and
soft-deleted (each change audited), the most popular ones and the tree for the cache,
popularity scores from sales and stock, and the deletes of the cleanups.

A product is never deleted while an order line names it: the order's history needs
it, and the foreign key forbids it. Its stock and search document go with it (cascade).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from app.catalog.store.audit import record_audit

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
#: -- soft_delete_product --: mark a live product deleted (the nightly retention removes it).
SOFT_DELETE_PRODUCT = text("""
UPDATE catalog_products SET deleted_at = now(), updated_at = now()
WHERE id = :id AND deleted_at IS NULL
RETURNING id
""")
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


def popular_products(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most popular live products: id, name, category, price, score, quantity."""
    return [dict(row) for row in conn.execute(POPULAR_PRODUCTS, {"limit": limit}).mappings()]


def category_tree(conn: Connection) -> list[dict[str, Any]]:
    """Every category (id, parent_id, name, slug) with its live ``products``, by slug."""
    return [dict(row) for row in conn.execute(CATEGORY_TREE).mappings()]


def update_popularity(conn: Connection, since: datetime) -> int:
    """Score every live product from its sales since ``since`` and its stock; how many
    scores changed."""
    return len(conn.execute(UPDATE_POPULARITY, {"since": since}).all())


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
