"""A service that feeds a :class:`~app.batching.Batcher`, for real ``python -m app services``
processes.

``probe.feeder`` takes the waiting rows of ``probe_feed`` (:func:`fill` it first), up to
500 a look, and puts each id into a batcher of at most ``SIZE`` items, which hands
them over after ``CONVEYOR_TEST_BATCH_WAIT_S`` seconds at the latest. A batch writes
one ``probe_batch_rows`` row per item in one transaction (a failed batch writes none);
an item marked ``poison`` fails any batch it is in.
"""

from __future__ import annotations

import os
import uuid

from app.batching import Batcher
from app.services import PollService
from tests.acceptance.probe_tasks import connect

DDL = """
CREATE TABLE IF NOT EXISTS probe_feed (
    id integer PRIMARY KEY,
    poison boolean NOT NULL DEFAULT false,
    taken boolean NOT NULL DEFAULT false
);
TRUNCATE probe_feed;
"""
#: The most items in a batch.
SIZE = 100
#: The most items the batcher holds; the feeder waits for room past it.
CAPACITY = 200


def fill(count: int, poison: tuple[int, ...] = ()) -> None:
    """Rows 1 to ``count`` waiting, those in ``poison`` marked so."""
    with connect() as conn:
        conn.execute(DDL)
        conn.execute("INSERT INTO probe_feed (id) SELECT generate_series(1, %s)", (count,))
        if poison:
            conn.execute("UPDATE probe_feed SET poison = true WHERE id = ANY(%s)", (list(poison),))


def write(batch: list[tuple[int, bool]]) -> None:
    name = uuid.uuid4().hex[:12]
    with connect() as conn, conn.transaction():
        for item_id, poison in batch:
            if poison:
                raise ValueError(f"item {item_id} is poisoned")
            conn.execute(
                "INSERT INTO probe_batch_rows (key, batch, size, attempt, pid) "
                "VALUES (%s, %s, %s, 1, %s)",
                (f"feed{item_id:05d}", name, len(batch), os.getpid()),
            )


batcher: Batcher[tuple[int, bool]] = Batcher(
    write,
    size=SIZE,
    wait_s=float(os.environ.get("CONVEYOR_TEST_BATCH_WAIT_S", "0.2")),
    capacity=CAPACITY,
    name="probe.feeder",
)


class Feeder(PollService[list[tuple[int, bool]]]):
    """Puts the waiting rows into :data:`batcher`."""

    name = "probe.feeder"
    idle = 0.2

    def poll(self) -> list[tuple[int, bool]]:
        with connect() as conn:
            return [
                (int(item_id), bool(poison))
                for item_id, poison in conn.execute(
                    "UPDATE probe_feed SET taken = true WHERE id IN (SELECT id FROM probe_feed "
                    "WHERE NOT taken ORDER BY id LIMIT 500) RETURNING id, poison"
                ).fetchall()
            ]

    def process(self, work: list[tuple[int, bool]]) -> int:
        for item in work:
            batcher.put(item)  # waits while the batcher is full
        return len(work)
