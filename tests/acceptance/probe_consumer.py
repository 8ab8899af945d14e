"""Consumers the acceptance tests run in real ``python -m app services`` processes.

``probe.consumer`` works through the table ``probe_consumer_items`` (:func:`fill` it
first): its fetch gives out the ids not yet done, twenty at a time, and writes a
``taken`` effect row (:func:`tests.acceptance.probe_tasks.effect`) as it gives out
each; its handler writes ``start``, takes ``CONVEYOR_TEST_ITEM_S`` seconds, writes
``end`` and marks the id done. All three rows are keyed ``probe.consumer:<id>`` and
stamped by the database's clock, so a test sees how many items were handled at once
and how many were taken and not finished. ``probe.consumer_broken`` fails every
item it is given.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator

from app.services import ConsumerService, consumer_service
from tests.acceptance.probe_tasks import connect, effect

DDL = """
CREATE TABLE IF NOT EXISTS probe_consumer_items (
    id integer PRIMARY KEY,
    done_at timestamptz
)
"""
#: The most ids one fetch gives out.
BATCH = 20


def fill(count: int) -> None:
    """Make the source ``count`` items waiting: ids 1 to ``count``."""
    with connect() as conn:
        conn.execute(DDL)
        conn.execute("TRUNCATE probe_consumer_items")
        conn.execute(
            "INSERT INTO probe_consumer_items (id) SELECT generate_series(1, %s)", (count,)
        )


def done() -> int:
    """How many items of the source are done."""
    with connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM probe_consumer_items WHERE done_at IS NOT NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


def item_s() -> float:
    """How long handling one item of ``probe.consumer`` takes."""
    return float(os.environ.get("CONVEYOR_TEST_ITEM_S", "0.3"))


class Items(ConsumerService[int]):
    """Every host: the items of ``probe_consumer_items``, 3 at once, 4 waiting at most."""

    name = "probe.consumer"
    parallelism = 3
    capacity = 4

    def fetch(self) -> Iterator[int]:
        # A generator: each id is given out (and recorded) only when the queue has room.
        with connect() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM probe_consumer_items WHERE done_at IS NULL "
                    "ORDER BY id LIMIT %s",
                    (BATCH,),
                )
            ]
        for item in ids:
            effect(f"{self.name}:{item}", "taken")
            yield item

    def handle(self, item: int) -> None:
        key = f"{self.name}:{item}"
        effect(key, "start")
        time.sleep(item_s())
        effect(key, "end")
        with connect() as conn:
            conn.execute(
                "UPDATE probe_consumer_items SET done_at = clock_timestamp() WHERE id = %s",
                (item,),
            )


_fetches = itertools.count(1)


def two_items() -> list[tuple[int, int]]:
    """Two items, tagged with the number of this fetch (one fetch per iteration)."""
    fetch = next(_fetches)
    return [(fetch, 1), (fetch, 2)]


@consumer_service(name="probe.consumer_broken", fetch=two_items, parallelism=2, capacity=1)
def broken(item: tuple[int, int]) -> None:
    """Fails every item, after writing its start (the backoff test); a decorated function."""
    fetch, number = item
    effect(f"probe.consumer_broken:{fetch}:{number}", "start")
    raise RuntimeError(f"probe.consumer_broken fails item {number} on purpose")
