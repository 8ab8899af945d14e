"""The sample catalog against the real database: seeding, and the search index's sync.

Seeding N products gives N products, each with its stock, in the category tree, with
customers and orders over the last 90 days; running it again adds as much again. The
search index finds a product by a word of its name, follows a rename and a soft
delete at the next sync (not before), and its cursor moves on: a sync with nothing
changed writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.catalog import search, seed, store
from app.catalog.search import PostgresSearchIndex
from app.catalog.vocabulary import DEPARTMENTS
from app.db import engine
from tests.catalog_support import TABLES, empty_catalog_tables

#: Every catalog table, emptied around each test.
#: Categories in the seeded tree: the departments and their subcategories.
TREE_SIZE = sum(1 + len(children) for _, _, children in DEPARTMENTS)


@pytest.fixture(autouse=True)
def empty_catalog() -> Iterator[None]:
    empty_catalog_tables()
    yield
    empty_catalog_tables()


def scalar(sql: str, **params: Any) -> Any:
    with engine().connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def counts() -> dict[str, int]:
    with engine().connect() as conn:
        return store.counts(conn)


def indexed(product_id: int) -> bool:
    with engine().connect() as conn:
        return store.indexed(conn, [product_id]) == {product_id}


def ids(hits: list[search.SearchHit]) -> list[int]:
    return [hit.id for hit in hits]


def update(product_id: int, **changes: str) -> None:
    with engine().begin() as conn:
        assert store.update_product(conn, product_id, **changes)


def test_seeding_n_products_gives_n_products_with_stock_categories_and_orders() -> None:
    report = seed.seed(1234, rng_seed=1, batch_size=100)

    found = counts()
    assert report.products == found["products"] == found["inventory"] == 1234
    assert report.categories_created == found["categories"] == TREE_SIZE
    assert report.customers == found["customers"] == 123
    assert report.orders == found["orders"] == 617
    assert report.order_lines == found["order_lines"] >= 617
    assert (
        scalar("""SELECT count(*) FROM catalog_products p
                     LEFT JOIN catalog_inventory i ON i.product_id = p.id
                     WHERE i.product_id IS NULL""")
        == 0
    )
    # Products sit in the leaves of the tree, never in a department.
    assert (
        scalar("""SELECT count(*) FROM catalog_products p
                     JOIN catalog_categories c ON c.id = p.category_id
                     WHERE c.parent_id IS NULL""")
        == 0
    )
    # Stock for an inventory monitor to find: out, critical (≤ 5) and low (≤ 10).
    assert scalar("SELECT count(*) FROM catalog_inventory WHERE quantity = 0") > 0
    assert scalar("SELECT count(*) FROM catalog_inventory WHERE quantity BETWEEN 1 AND 5") > 0
    assert scalar("SELECT count(*) FROM catalog_inventory WHERE quantity BETWEEN 6 AND 10") > 0
    assert (
        scalar(
            "SELECT count(*) FROM catalog_orders WHERE created_at < now() - interval '90 days'"
            " OR created_at > now()"
        )
        == 0
    )
    # Each order's total is its lines at the products' prices.
    assert (
        scalar("""SELECT count(*) FROM catalog_orders o
                     JOIN (SELECT order_id, sum(quantity * unit_price) AS total
                           FROM catalog_order_lines GROUP BY order_id) l ON l.order_id = o.id
                     WHERE l.total <> o.total""")
        == 0
    )
    assert (
        scalar("""SELECT count(*) FROM catalog_order_lines l
                     JOIN catalog_products p ON p.id = l.product_id
                     WHERE l.unit_price <> p.price""")
        == 0
    )
    assert scalar("SELECT count(*) FROM catalog_audit_log WHERE action = 'seed'") == 1


def test_seeding_again_adds_as_much_again_and_if_empty_adds_nothing() -> None:
    seed.seed(40, rng_seed=2)
    again = seed.seed(40, rng_seed=2)  # the same data, beside the first: emails stay unique
    skipped = seed.seed(40, if_empty=True)

    assert again.categories_created == 0 and again.products == 40
    assert skipped.skipped and skipped.products == 0
    found = counts()
    assert found["products"] == found["inventory"] == 80
    assert found["categories"] == TREE_SIZE and found["customers"] == 20


def test_if_empty_seeds_an_empty_catalog() -> None:
    report = seed.seed(25, if_empty=True)
    assert not report.skipped and scalar("SELECT count(*) FROM catalog_products") == 25


def test_the_same_rng_seed_makes_the_same_data() -> None:
    def snapshot() -> list[Any]:
        with engine().connect() as conn:
            return list(
                conn.execute(
                    text("""SELECT p.name, p.price, i.quantity, c.slug FROM catalog_products p
                            JOIN catalog_inventory i ON i.product_id = p.id
                            JOIN catalog_categories c ON c.id = p.category_id ORDER BY p.id""")
                )
            )

    seed.seed(60, rng_seed=42)
    first = snapshot()
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY"))
    seed.seed(60, rng_seed=42)
    assert snapshot() == first
    with engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY"))
    seed.seed(60, rng_seed=43)
    assert snapshot() != first


def test_search_finds_a_product_by_a_word_of_its_name() -> None:
    seed.seed(300, rng_seed=3)
    index = PostgresSearchIndex()
    assert index.search("walnut", 100) == []  # nothing is indexed before the first sync
    assert index.sync(None).indexed == 300

    with engine().connect() as conn:
        product = store.product(conn, 1)
    assert product is not None
    word = product["name"].split()[-1]  # the noun, e.g. "Chair"
    hits = index.search(word.lower(), 100)
    assert 1 in ids(hits)
    assert [hit.rank for hit in hits] == sorted((hit.rank for hit in hits), reverse=True)
    assert all(hit.rank > 0 for hit in hits)


def test_a_word_in_the_name_ranks_above_the_same_word_in_a_description() -> None:
    seed.seed(50, rng_seed=4)
    update(7, description="Sturdy enough for a quokka, they say.")
    update(9, name="Quokka Lamp")
    index = PostgresSearchIndex()
    index.sync(None)

    hits = index.search("quokka", 10)
    assert ids(hits) == [9, 7]
    assert hits[0].rank > hits[1].rank and hits[0].name == "Quokka Lamp"


def test_after_a_rename_and_a_sync_the_new_name_is_found_and_the_old_one_no_longer() -> None:
    seed.seed(200, rng_seed=5)
    index = PostgresSearchIndex()
    cursor = index.sync(None).cursor
    with engine().connect() as conn:
        product = store.product(conn, 11)
    assert product is not None
    old = f'"{product["name"]}"'  # the whole old name, as a phrase
    assert 11 in ids(index.search(old, 100))

    update(11, name="Zorblax Widget")
    # Not before the sync: the index still has the old document.
    assert index.search("zorblax", 10) == [] and 11 in ids(index.search(old, 100))

    synced = index.sync(cursor)
    assert (synced.indexed, synced.removed) == (1, 0)
    assert ids(index.search("zorblax", 10)) == [11]
    assert 11 not in ids(index.search(old, 100))


def test_a_soft_deleted_product_is_removed_by_the_next_sync() -> None:
    seed.seed(100, rng_seed=6)
    index = PostgresSearchIndex()
    cursor = index.sync(None).cursor
    update(5, name="Quibbletron Kettle")
    cursor = index.sync(cursor).cursor
    with engine().begin() as conn:
        assert store.soft_delete_product(conn, 5)
        assert not store.soft_delete_product(conn, 5)  # once is enough
    # Never shown once deleted, though its document stays until the sync.
    assert index.search("quibbletron", 10) == []
    assert indexed(5)

    synced = index.sync(cursor)
    assert (synced.indexed, synced.removed) == (0, 1)
    assert not indexed(5)
    assert index.sync(synced.cursor).removed == 0


def test_the_cursor_advances_and_a_sync_without_changes_indexes_nothing() -> None:
    seed.seed(120, rng_seed=7)
    first = search.sync_stored()
    assert (first.indexed, first.read) == (120, 120) and first.cursor is not None

    second = search.sync_stored()
    assert (second.indexed, second.removed) == (0, 0)
    assert second.cursor is not None and second.cursor >= first.cursor
    with engine().connect() as conn:
        assert store.load_cursor(conn, search.CURSOR_NAME) == second.cursor
    with engine().begin() as conn:  # a late writer cannot move it back
        assert store.save_cursor(conn, search.CURSOR_NAME, first.cursor - timedelta(days=1)) == (
            second.cursor
        )

    update(3, name="Flumph Chair")
    third = search.sync_stored()
    assert third.indexed == 1 and ids(search.index().search("flumph", 5)) == [3]


def test_a_sync_pages_through_products_updated_at_the_same_instant() -> None:
    """A seed stamps all its products with one time: the keyset goes on by id."""
    seed.seed(50, rng_seed=8)
    synced = PostgresSearchIndex(batch_size=7).sync(None)
    assert (synced.indexed, synced.read) == (50, 50)
    assert scalar("SELECT count(*) FROM catalog_search_documents") == 50


@pytest.mark.parametrize(
    ("overlap", "found"),
    [(search.OVERLAP, True), (timedelta(0), False)],
    ids=["with the overlap", "without"],
)
def test_a_rename_committed_after_a_sync_began_is_indexed_within_the_overlap(
    overlap: timedelta, found: bool
) -> None:
    """A product is stamped with its transaction's start: one that commits after a sync
    has moved on is caught by the next sync as long as it took less than the overlap."""
    seed.seed(30, rng_seed=9)
    index = PostgresSearchIndex(overlap=overlap)
    cursor = index.sync(None).cursor
    with engine().connect() as writer:
        writer.begin()
        assert store.update_product(writer, 4, name="Snorkelwump Tent")
        writer.execute(text("SELECT pg_sleep(0.05)"))
        cursor = index.sync(cursor).cursor  # runs while the rename is not committed
        writer.commit()

    index.sync(cursor)
    assert (ids(index.search("snorkelwump", 5)) == [4]) is found
