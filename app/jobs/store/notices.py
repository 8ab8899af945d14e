"""Finished jobs someone is to hear of: read for the notifier, and marked as dealt with.

The caller holds the transaction: the rows it reads stay locked (others skip them)
until it commits, so the mails it enqueues on the same connection and the marks
commit together, or neither does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from app.jobs.store.queries import NOTICES_DEALT_WITH, NOTICES_DUE


def due(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` finishes not dealt with yet, oldest first, locked: each with the
    job's id, handler, status, notify_to and finished_at."""
    return [dict(row) for row in conn.exec_driver_sql(NOTICES_DUE, {"limit": limit}).mappings()]


def dealt_with(conn: Connection, ids: Iterable[uuid.UUID]) -> None:
    """Mark these jobs' current finishes as dealt with."""
    conn.exec_driver_sql(NOTICES_DEALT_WITH, {"ids": list(ids)})
