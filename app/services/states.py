"""A service's states and how an iteration's outcome moves it between them (pure).

The states, as the ``services`` table, the API and the console show them:

* ``running``: active, and its last iteration succeeded (or none has run yet);
* ``degraded``: active, but its last iterations failed; it retries with backoff;
* ``failed``: it failed ``services.max_consecutive_errors`` times in a row, and its
  process exits non-zero so that its supervisor restarts it;
* ``stopped``: its process stopped it (a signal, or another service's failure);
* ``standby``: a singleton on a host that does not hold its lease: it waits.

Counts are since the row's process started it (``started_at``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ServiceState(StrEnum):
    """Where a service stands on one host."""

    RUNNING = "running"
    DEGRADED = "degraded"
    FAILED = "failed"
    STOPPED = "stopped"
    STANDBY = "standby"


#: States in which a service is done on its host: nothing moves it out of them.
FINAL = frozenset({ServiceState.FAILED, ServiceState.STOPPED})


@dataclass(frozen=True)
class Status:
    """A service's state and counters on one host."""

    state: ServiceState = ServiceState.RUNNING
    #: Errors since the last success.
    consecutive_errors: int = 0
    #: Items its iterations reported, since it started.
    items_processed: int = 0
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


def active_state(status: Status) -> ServiceState:
    """The state of an active service: degraded while its last iterations failed."""
    return ServiceState.DEGRADED if status.consecutive_errors else ServiceState.RUNNING


def succeeded(status: Status, items: int, at: datetime) -> Status:
    """After an iteration that processed ``items``: running, the error count cleared."""
    if status.state in FINAL:
        return status
    return dataclasses.replace(
        status,
        state=ServiceState.RUNNING,
        consecutive_errors=0,
        items_processed=status.items_processed + max(0, items),
        last_success_at=at,
    )


def errored(status: Status, error: str, at: datetime, max_errors: int) -> Status:
    """After an iteration that raised: degraded, or failed at the ``max_errors``-th error
    in a row."""
    if status.state in FINAL:
        return status
    errors = status.consecutive_errors + 1
    return dataclasses.replace(
        status,
        state=ServiceState.FAILED if errors >= max_errors else ServiceState.DEGRADED,
        consecutive_errors=errors,
        last_error=error,
        last_error_at=at,
    )


def leased(status: Status, held: bool) -> Status:
    """A singleton that gained (``held``) or lost its lease: active, or standby."""
    if status.state in FINAL:
        return status
    state = active_state(status) if held else ServiceState.STANDBY
    return dataclasses.replace(status, state=state)


def stopped(status: Status) -> Status:
    """A service its process stopped; a failed one stays failed."""
    if status.state in FINAL:
        return status
    return dataclasses.replace(status, state=ServiceState.STOPPED)


def failed(status: Status, error: str, at: datetime) -> Status:
    """A service whose runtime broke (its thread died): failed, whatever its count."""
    return dataclasses.replace(
        status, state=ServiceState.FAILED, last_error=error, last_error_at=at
    )
