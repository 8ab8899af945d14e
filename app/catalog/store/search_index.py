"""The search index's documents (``catalog_search_documents``): one ``tsvector`` per
live product, synced in keyset batches from products' ``updated_at``, and ranked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

#: The text search configuration of documents and queries alike (stemming, stop words).
TEXT_SEARCH_CONFIG = "english"

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
