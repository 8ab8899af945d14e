"""Realistic sample data for the catalog, made with Faker and inserted in batches.

``seed(n)`` adds ``n`` products to a fixed tree of categories (created on the first
seed, found again on the next), each with its stock: about 5% out of stock, 7% at 1-5
and 8% at 6-10, so that an inventory monitor has work. It adds a customer for every ten
products and an order for every two, spread over the last 90 days, each with one to
four lines at the product's price. Running it again adds as much again, beside what is
there (``if_empty`` seeds only a catalog without products). One seed runs at a time
(an advisory lock) in one transaction: it adds everything or nothing.

Rows are made and inserted ``batch_size`` at a time, so memory stays bounded: what is
kept across batches is the new products' ids and prices and the customers' ids, a few
bytes each. The same ``rng_seed`` gives the same names, prices, stock and orders.
"""

from __future__ import annotations

import random
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from faker import Faker
from sqlalchemy import Connection, Engine

from app.catalog import store
from app.catalog.vocabulary import ADJECTIVES, DEPARTMENTS, MATERIALS
from app.db import engine as default_engine
from app.errors import ConveyorError

#: Rows per insert statement.
BATCH_SIZE = 1000
#: How far back orders go.
ORDER_DAYS = 90


class InvalidSeed(ConveyorError, ValueError):
    """A seeding argument that cannot be used."""

    def __init__(self, argument: str, value: object, reason: str) -> None:
        self.argument = argument
        super().__init__(f"seed {argument} {value!r} is invalid: {reason}")


@dataclass(frozen=True)
class SeedReport:
    """What one seed added."""

    #: The RNG seed used: pass it again to make the same data.
    rng_seed: int
    #: Database time of the seed's transaction: every row it added is updated then.
    started_at: datetime
    #: True when ``if_empty`` found products, so nothing was added.
    skipped: bool = False
    categories_created: int = 0
    products: int = 0
    customers: int = 0
    orders: int = 0
    order_lines: int = 0


@dataclass(frozen=True)
class _Leaf:
    """A category products go into, with what they are called and cost."""

    id: int
    name: str
    nouns: tuple[str, ...]
    median_price: float


def seed(
    products: int,
    *,
    rng_seed: int | None = None,
    if_empty: bool = False,
    batch_size: int = BATCH_SIZE,
    engine: Engine | None = None,
) -> SeedReport:
    """Add ``products`` products with their stock, customers and orders, in one
    transaction; with ``if_empty``, only into a catalog without products."""
    if products < 1:
        raise InvalidSeed("products", products, "seed at least 1 product")
    if batch_size < 1:
        raise InvalidSeed("batch_size", batch_size, "at least 1 row per batch")
    rng_seed = random.SystemRandom().randrange(2**31) if rng_seed is None else rng_seed
    rng = random.Random(rng_seed)
    fake = Faker("en_US")
    fake.seed_instance(rng_seed)
    with (engine or default_engine()).begin() as conn:
        store.seeding.lock_seeding(conn)
        started_at = store.tables.now(conn)
        if if_empty and store.seeding.has_products(conn):
            return SeedReport(rng_seed=rng_seed, started_at=started_at, skipped=True)
        leaves, created = _categories(conn)
        ids, cents = _products(conn, rng, fake, leaves, products, started_at, batch_size)
        customers = _customers(conn, fake, rng, max(10, products // 10), started_at, batch_size)
        orders, lines = _orders(conn, rng, ids, cents, customers, products, started_at, batch_size)
        report = SeedReport(
            rng_seed=rng_seed,
            started_at=started_at,
            categories_created=created,
            products=len(ids),
            customers=len(customers),
            orders=orders,
            order_lines=lines,
        )
        store.audit.record_audit(conn, "catalog", None, "seed", _summary(report))
        store.tables.analyze(conn)
    return report


def _summary(report: SeedReport) -> dict[str, Any]:
    keys = ("rng_seed", "categories_created", "products", "customers", "orders", "order_lines")
    return {key: getattr(report, key) for key in keys}


def _categories(conn: Connection) -> tuple[list[_Leaf], int]:
    """The tree's leaves, inserting what is missing; how many categories were new."""
    leaves, created = [], 0
    for department, median_price, children in DEPARTMENTS:
        parent_slug = _slug(department)
        parent_id, new = store.seeding.ensure_category(conn, parent_slug, department, None)
        created += new
        for name, nouns in children.items():
            child_id, new = store.seeding.ensure_category(
                conn, f"{parent_slug}/{_slug(name)}", name, parent_id
            )
            created += new
            leaves.append(_Leaf(child_id, name, nouns, median_price))
    return leaves, created


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def batch_sizes(total: int, size: int) -> Iterator[int]:
    """The sizes of the batches of at most ``size`` rows that make ``total``."""
    for start in range(0, total, size):
        yield min(size, total - start)


def list_price(rng: random.Random, median: float) -> Decimal:
    """A price around ``median`` dollars, from 1 to 9,999.99, ending in .99, .49 or .00."""
    dollars = int(min(max(rng.lognormvariate(0, 0.7) * median, 1.0), 9999.0))
    return Decimal(dollars) + rng.choice((Decimal("0.99"), Decimal("0.49"), Decimal("0.00")))


def stock_quantity(rng: random.Random) -> int:
    """A product's stock: 5% none, 7% 1-5, 8% 6-10, the rest 11-500."""
    draw = rng.random()
    if draw < 0.05:
        return 0
    if draw < 0.12:
        return rng.randint(1, 5)
    if draw < 0.20:
        return rng.randint(6, 10)
    return rng.randint(11, 500)


def _products(
    conn: Connection,
    rng: random.Random,
    fake: Faker,
    leaves: list[_Leaf],
    total: int,
    now: datetime,
    batch_size: int,
) -> tuple[array[int], array[int]]:
    """Insert ``total`` products and their stock; their ids and prices in cents."""
    ids, cents = array("q"), array("q")
    for size in batch_sizes(total, batch_size):
        batch_ids = store.seeding.reserve_ids(conn, "catalog_products", size)
        rows, stock = [], []
        for product_id in batch_ids:
            leaf = rng.choice(leaves)
            adjective, material, noun = (
                rng.choice(ADJECTIVES),
                rng.choice(MATERIALS),
                rng.choice(leaf.nouns),
            )
            price = list_price(rng, leaf.median_price)
            description = (
                f"A {adjective.lower()} {noun.lower()} in {material.lower()}. "
                f"{fake.catch_phrase()}. {fake.paragraph(nb_sentences=2)}"
            )
            rows.append(
                {
                    "id": product_id,
                    "category_id": leaf.id,
                    "name": f"{adjective} {material} {noun}",
                    "description": description,
                    "price": price,
                    "popularity_score": round(rng.betavariate(1.2, 4) * 100, 2),
                    "created_at": now - timedelta(days=rng.uniform(ORDER_DAYS, 730)),
                }
            )
            stock.append({"product_id": product_id, "quantity": stock_quantity(rng)})
            ids.append(product_id)
            cents.append(int(price * 100))
        store.seeding.insert_products(conn, rows)
        store.seeding.insert_inventory(conn, stock)
    return ids, cents


def _customers(
    conn: Connection, fake: Faker, rng: random.Random, total: int, now: datetime, batch_size: int
) -> array[int]:
    """Insert ``total`` customers; their ids. Emails are unique by id, on example domains."""
    ids = array("q")
    for size in batch_sizes(total, batch_size):
        rows = []
        for customer_id in store.seeding.reserve_ids(conn, "catalog_customers", size):
            first, last = fake.first_name(), fake.last_name()
            local = re.sub(r"[^a-z0-9.]+", "", f"{first}.{last}".lower())
            rows.append(
                {
                    "id": customer_id,
                    "name": f"{first} {last}",
                    "email": f"{local}.{customer_id}@{fake.safe_domain_name()}",
                    "created_at": now - timedelta(days=rng.uniform(ORDER_DAYS, 1000)),
                }
            )
            ids.append(customer_id)
        store.seeding.insert_customers(conn, rows)
    return ids


def order_status(rng: random.Random, age: timedelta) -> str:
    """An order's state for its age: recent ones are still on their way."""
    if rng.random() < 0.04:
        return "cancelled"
    if age < timedelta(days=1):
        return rng.choice(("placed", "paid"))
    if age < timedelta(days=3):
        return rng.choice(("paid", "shipped"))
    if age < timedelta(days=10):
        return rng.choice(("shipped", "delivered"))
    return "delivered"


def _orders(
    conn: Connection,
    rng: random.Random,
    product_ids: array[int],
    cents: array[int],
    customer_ids: array[int],
    products: int,
    now: datetime,
    batch_size: int,
) -> tuple[int, int]:
    """Insert an order for every two products, each with 1-4 lines; (orders, lines)."""
    orders = lines = 0
    for size in batch_sizes(max(10, products // 2), batch_size):
        order_rows, line_rows = [], []
        for order_id in store.seeding.reserve_ids(conn, "catalog_orders", size):
            total = Decimal(0)
            for _ in range(rng.choices((1, 2, 3, 4), weights=(50, 25, 15, 10))[0]):
                pick = rng.randrange(len(product_ids))
                quantity = rng.choices((1, 2, 3), weights=(80, 15, 5))[0]
                unit_price = Decimal(cents[pick]).scaleb(-2)
                total += unit_price * quantity
                line_rows.append(
                    {
                        "order_id": order_id,
                        "product_id": product_ids[pick],
                        "quantity": quantity,
                        "unit_price": unit_price,
                    }
                )
            age = timedelta(seconds=rng.uniform(0, ORDER_DAYS * 86400))
            order_rows.append(
                {
                    "id": order_id,
                    "customer_id": rng.choice(customer_ids),
                    "status": order_status(rng, age),
                    "total": total,
                    "created_at": now - age,
                }
            )
        orders += store.seeding.insert_orders(conn, order_rows)
        lines += store.seeding.insert_order_lines(conn, line_rows)
    return orders, lines
