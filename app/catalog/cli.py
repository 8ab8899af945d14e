"""``python -m app catalog seed``: fill the sample catalog, then index it for search."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from app.errors import ConveyorError

SEED_HELP = """Add realistic sample data: products in a tree of categories, each with its
stock (some out of stock, some at 5 or fewer, some at 10 or fewer), a customer for every
ten products and an order for every two over the last 90 days; then index the new
products for search. Each run adds as much again beside what is there; --if-empty seeds
only a catalog without products. It all goes in one transaction: all or nothing."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def add_commands(sub: Any) -> None:
    """Register ``catalog`` on the top-level parser."""
    catalog = sub.add_parser("catalog", help="the sample catalog domain")
    actions = catalog.add_subparsers(dest="action", required=True)
    seeding = actions.add_parser(
        "seed", help="add sample products, stock, customers and orders", description=SEED_HELP
    )
    seeding.add_argument("--products", type=_positive, default=1000, metavar="N")
    seeding.add_argument(
        "--seed", type=int, default=None, help="RNG seed: the same seed makes the same data"
    )
    seeding.add_argument(
        "--if-empty", action="store_true", help="do nothing if the catalog has products"
    )
    seeding.add_argument("--batch-size", type=_positive, default=1000, metavar="ROWS")
    seeding.set_defaults(func=cmd_seed)


def cmd_seed(args: argparse.Namespace) -> int:
    """``catalog seed --products N [--seed S] [--if-empty]``; prints what it added."""
    from app.catalog import search, seed

    started = time.monotonic()
    try:
        report = seed.seed(
            args.products,
            rng_seed=args.seed,
            if_empty=args.if_empty,
            batch_size=args.batch_size,
        )
    except ConveyorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report.skipped:
        print("catalog: it has products already; --if-empty seeds nothing")
        return 0
    synced = search.sync_stored(since=report.started_at)
    print(
        f"catalog: seeded {report.products} products ({report.categories_created} new "
        f"categories), {report.customers} customers, {report.orders} orders with "
        f"{report.order_lines} lines; indexed {synced.indexed} for search "
        f"in {time.monotonic() - started:.1f}s (--seed {report.rng_seed} makes the same data)"
    )
    return 0
