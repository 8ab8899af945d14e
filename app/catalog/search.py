"""The catalog's search index: a small interface and its PostgreSQL backend.

:class:`SearchIndex` is what callers (the API, the sync job) see: ``sync(cursor)``
brings the index up to date with the products changed since ``cursor`` and
``search(q, limit)`` ranks live products for a query. :class:`PostgresSearchIndex`
keeps one ``tsvector`` per product (name weight A, description B, category C) under a
GIN index and ranks with ``ts_rank`` over ``websearch_to_tsquery``.

The cursor is a time on products' ``updated_at``: every product updated at or before it
is indexed as it is. A product is stamped with its transaction's start, and a
transaction that started before a sync may commit after it, so a sync moves the
cursor only up to its own start less :data:`OVERLAP`: a write transaction open longer
than that may be missed until the product changes again. The rows within the overlap
are read again by the next sync, and left alone if they did not change (a document
keeps the ``updated_at`` it was built from), so re-reading them costs no write.
:func:`sync_stored` keeps the cursor in ``catalog_cursors`` between runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy import Engine

from app.catalog import store
from app.db import engine as default_engine
from app.errors import ConveyorError

#: How long a write transaction on products may stay open and still be indexed.
OVERLAP = timedelta(minutes=5)
#: Products read per statement (and per transaction) of a sync.
BATCH_SIZE = 1000
#: The name of the search index's cursor in ``catalog_cursors``.
CURSOR_NAME = "search"


class InvalidSearch(ConveyorError, ValueError):
    """A search argument the index cannot use."""

    def __init__(self, argument: str, value: object, reason: str) -> None:
        self.argument = argument
        super().__init__(f"search {argument} {value!r} is invalid: {reason}")


@dataclass(frozen=True)
class SyncResult:
    """What one sync did, and where the next one starts."""

    #: Pass to the next ``sync``: products updated at or before it are indexed.
    cursor: datetime | None
    #: Documents written: new products, and products whose ``updated_at`` changed.
    indexed: int
    #: Documents deleted: products soft-deleted since they were indexed.
    removed: int
    #: Products read (changed or not).
    read: int


@dataclass(frozen=True)
class SearchHit:
    """One live product that matches a query."""

    id: int
    name: str
    category: str | None
    price: Decimal
    #: ``ts_rank`` of the product's document for the query: higher is better.
    rank: float


class SearchIndex(Protocol):
    """A search index over the catalog's live products."""

    def sync(self, cursor: datetime | None) -> SyncResult:
        """Index what changed since ``cursor`` (None: everything); the new cursor."""
        ...

    def search(self, q: str, limit: int = 20) -> list[SearchHit]:
        """The ``limit`` best matches of ``q``, best first."""
        ...


class PostgresSearchIndex:
    """The search index in PostgreSQL: ``catalog_search_documents`` and its GIN index."""

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        overlap: timedelta = OVERLAP,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise InvalidSearch("batch_size", batch_size, "at least 1 product per batch")
        self.engine = engine or default_engine()
        self.overlap = overlap
        self.batch_size = batch_size

    def sync(self, cursor: datetime | None) -> SyncResult:
        """Index the products updated since ``cursor`` and remove the soft-deleted ones,
        one transaction per batch; the new cursor and what was done."""
        after: tuple[datetime | None, int] = (cursor, 0)
        horizon: datetime | None = None
        indexed = removed = read = 0
        while True:
            with self.engine.begin() as conn:
                if horizon is None:
                    horizon = store.tables.now(conn) - self.overlap
                batch = store.search_index.sync_search_batch(conn, after, self.batch_size)
            indexed += int(batch["indexed"])
            removed += int(batch["removed"])
            read += int(batch["read"])
            if batch["read"] < self.batch_size:
                break
            after = (batch["last_at"], int(batch["last_id"]))
        position = horizon if cursor is None else max(cursor, horizon)
        return SyncResult(cursor=position, indexed=indexed, removed=removed, read=read)

    def search(self, q: str, limit: int = 20) -> list[SearchHit]:
        """Live products matching ``q`` (words, "a phrase", or, -word), by ``ts_rank``,
        then popularity; a query of stop words alone matches nothing."""
        if not q.strip():
            raise InvalidSearch("q", q, "give at least one word")
        if limit < 1:
            raise InvalidSearch("limit", limit, "at least 1")
        with self.engine.connect() as conn:
            rows = store.search_index.search(conn, q, limit)
        return [
            SearchHit(
                id=int(row["id"]),
                name=row["name"],
                category=row["category"],
                price=row["price"],
                rank=float(row["rank"]),
            )
            for row in rows
        ]


def index() -> PostgresSearchIndex:
    """The configured search index (its one backend: PostgreSQL)."""
    return PostgresSearchIndex()


def sync_stored(
    target: SearchIndex | None = None, since: datetime | None = None, engine: Engine | None = None
) -> SyncResult:
    """Sync ``target`` from the cursor kept in ``catalog_cursors`` and keep the new one.

    ``since`` starts further back than the stored cursor (a seed passes its start, as
    its rows were written in a transaction that may have outlasted the overlap). The
    stored cursor only moves forward, so two syncs at once are harmless.
    """
    target = target or index()
    db = engine or default_engine()
    with db.begin() as conn:
        stored = store.cursors.load_cursor(conn, CURSOR_NAME)
    start = stored if since is None or stored is None else min(stored, since)
    result = target.sync(start)
    with db.begin() as conn:
        kept = store.cursors.save_cursor(conn, CURSOR_NAME, result.cursor)
    return SyncResult(cursor=kept, indexed=result.indexed, removed=result.removed, read=result.read)
