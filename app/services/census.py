"""Conveyor's built-in service: the ledger census, the jobs per state every 30 seconds.

One host counts (a singleton), logs one line and shows the counts on its row
(``GET /api/v1/services``, the console's Services page). It is also the smallest
example of a service; turn it off with ``CONVEYOR_SERVICES__BUILTINS=false``.
"""

from __future__ import annotations

import logging

from app.db import engine
from app.jobs.models import JobStatus
from app.jobs.store import figures
from app.services.base import Mode, Service

logger = logging.getLogger(__name__)


class LedgerCensus(Service):
    """Count the ledger's jobs per state, log them and show them on the service's row."""

    name = "conveyor.ledger_census"
    every = "30s"
    mode = Mode.SINGLETON

    def iterate(self) -> int:
        """One census; it counts as one item."""
        totals = dict.fromkeys((status.value for status in JobStatus), 0)
        with engine().connect() as conn:
            for by_state in figures.queue_states(conn).values():
                for state, count in by_state.items():
                    totals[state] = totals.get(state, 0) + count
        self.detail = {"jobs": totals}
        logger.info(
            "ledger census: %d jobs; %s",
            sum(totals.values()),
            ", ".join(f"{state} {count}" for state, count in totals.items()),
        )
        return 1
