"""The catalog's pure logic: how seed data is drawn, and the arguments it refuses.

What the rows look like once in PostgreSQL is tests/integration/test_catalog.py's.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import create_engine

from app.__main__ import parser
from app.catalog import seed
from app.catalog.search import InvalidSearch, PostgresSearchIndex
from app.catalog.vocabulary import DEPARTMENTS

#: An engine that is never connected: nothing listens there.
NOWHERE = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")


@pytest.mark.parametrize(
    ("total", "size", "sizes"),
    [
        (2500, 1000, [1000, 1000, 500]),
        (1000, 1000, [1000]),
        (999, 1000, [999]),
        (7, 3, [3, 3, 1]),
        (1, 1000, [1]),
    ],
)
def test_rows_are_inserted_in_batches_of_at_most_the_batch_size(
    total: int, size: int, sizes: list[int]
) -> None:
    assert list(seed.batch_sizes(total, size)) == sizes


def test_stock_is_out_critical_or_low_in_a_fifth_of_the_products() -> None:
    rng = random.Random(1)
    draws = [seed.stock_quantity(rng) for _ in range(20_000)]
    bands = Counter(
        "out" if q == 0 else "critical" if q <= 5 else "low" if q <= 10 else "ok" for q in draws
    )
    assert bands["out"] / len(draws) == pytest.approx(0.05, abs=0.01)
    assert bands["critical"] / len(draws) == pytest.approx(0.07, abs=0.01)
    assert bands["low"] / len(draws) == pytest.approx(0.08, abs=0.01)
    assert min(draws) == 0 and max(draws) <= 500


@pytest.mark.parametrize("median", [1.0, 25.0, 120.0, 9000.0])
def test_a_price_has_cents_as_shops_set_them_and_stays_in_range(median: float) -> None:
    rng = random.Random(2)
    prices = [seed.list_price(rng, median) for _ in range(2000)]
    assert all(Decimal("1") <= p <= Decimal("9999.99") for p in prices)
    assert {p % 1 for p in prices} <= {Decimal("0.99"), Decimal("0.49"), Decimal("0")}
    assert all(p.as_tuple().exponent == -2 for p in prices)


@pytest.mark.parametrize(
    ("age", "possible"),
    [
        (timedelta(hours=2), {"placed", "paid", "cancelled"}),
        (timedelta(days=2), {"paid", "shipped", "cancelled"}),
        (timedelta(days=5), {"shipped", "delivered", "cancelled"}),
        (timedelta(days=60), {"delivered", "cancelled"}),
    ],
)
def test_an_order_is_further_along_the_older_it_is(age: timedelta, possible: set[str]) -> None:
    rng = random.Random(3)
    assert {seed.order_status(rng, age) for _ in range(500)} == possible


def test_the_departments_have_subcategories_and_product_names() -> None:
    for department, median_price, children in DEPARTMENTS:
        assert children and median_price > 0, department
        assert all(nouns for nouns in children.values()), department


@pytest.mark.parametrize(
    ("argument", "call"),
    [
        ("products", lambda: seed.seed(0)),
        ("batch_size", lambda: seed.seed(10, batch_size=0)),
    ],
)
def test_seed_refuses_nothing_to_seed_naming_the_argument(
    argument: str, call: Callable[[], object]
) -> None:
    with pytest.raises(seed.InvalidSeed) as refused:
        call()
    assert f"seed {argument}" in str(refused.value) and isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    ("q", "limit", "argument"), [("", 5, "q"), ("  ", 5, "q"), ("x", 0, "limit")]
)
def test_search_refuses_a_blank_query_or_no_results_before_asking_the_database(
    q: str, limit: int, argument: str
) -> None:
    with pytest.raises(InvalidSearch) as refused:
        PostgresSearchIndex(NOWHERE).search(q, limit)
    assert refused.value.argument == argument


def test_catalog_seed_parses_its_options_and_refuses_a_count_below_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parser().parse_args(
        ["catalog", "seed", "--products", "500", "--if-empty", "--seed", "9"]
    )
    assert (args.products, args.if_empty, args.seed, args.batch_size) == (500, True, 9, 1000)
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["catalog", "seed", "--products", "0"])
    assert exited.value.code == 2 and "'0' is not a positive number" in capsys.readouterr().err
