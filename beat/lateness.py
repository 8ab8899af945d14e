"""How late beat is: per enabled schedule, how long its oldest due fire has waited.

Read from the schedule tables alone (no beat process is asked), so any web replica
answers the same; ``/metrics`` serves it as ``conveyor_schedule_lag_seconds``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.db import engine
from app.errors import ConveyorError
from beat import tables


def schedule_lags(now: datetime | None = None) -> dict[str, float]:
    """Seconds each enabled schedule's oldest due fire has waited for beat (0: on time).

    The first fire after the schedule's cursor (the last fire beat handled) is due;
    if that time has passed, beat is that late. A schedule beat has not seen yet (or
    whose expression was edited since) counts from its last change, as beat does.
    """
    now = now or datetime.now(UTC)
    with engine().connect() as conn:
        rows = tables.load_rows(conn)
    lags = {}
    for row in rows:
        try:
            expression, tz = tables.expression_of(row)
            base = row["cursor"]
            if base is None or row["seen_expression"] != tables.seen_key(expression, tz):
                changes = (t for t in (base, row["date_changed"]) if t is not None)
                base = min(max(changes, default=now), now)
            plan = tables.build_plan(row, base)
        except (ConveyorError, ValueError, TypeError):
            continue  # beat disables a row it cannot schedule: nothing is late
        lags[row["name"]] = plan.lag_s(now)
    return lags
