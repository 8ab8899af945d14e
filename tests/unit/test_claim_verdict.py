"""The claim's verdict table without a server: each rule, row by row."""

from __future__ import annotations

import pytest

from app.jobs.gate import Holder
from app.jobs.models import JobStatus
from app.jobs.verdict import (
    BUSY_RETRY_MAX_S,
    TTL_MARGIN_S,
    Verdict,
    busy_wait_s,
    holder_gone,
    in_ledger,
    reconcile,
    trusted,
    within_cap,
)

ME = Holder("w1@a", "a", 100)
NOW = 1_800_000_000.0
TTL = 7 * 86400.0
DAY = 86400.0


@pytest.mark.parametrize(
    ("lease_left_s", "wait_s"),
    [
        (0.0, 1.0),  # a lease about to end: come back in a second, not at once
        (0.4, 1.0),
        (12.5, 12.5),  # back when the holder's lease ends
        (3600.0, BUSY_RETRY_MAX_S),  # never parked longer than the cap
    ],
)
def test_a_duplicate_waits_for_its_holders_lease_within_bounds(
    lease_left_s: float, wait_s: float
) -> None:
    assert busy_wait_s(lease_left_s) == wait_s


@pytest.mark.parametrize(
    ("holder", "exited_here", "gone"),
    [
        (ME, False, True),  # this very process: it runs one delivery at a time
        (Holder("w1@a", "a", 101), True, True),  # a process of this machine that exited
        (Holder("w1@a", "a", 101), False, False),  # one that still runs
        (Holder("w2@b", "b", 100), False, None),  # another machine: the ledger decides
        (Holder("w2@b", "b", 100), True, True),
    ],
)
def test_a_holder_is_gone_only_when_this_machine_or_the_ledger_can_tell(
    holder: Holder, exited_here: bool, gone: bool | None
) -> None:
    assert holder_gone(holder, ME, exited_here=exited_here) is gone


@pytest.mark.parametrize(
    ("deliveries", "redelivered", "sent_at", "since", "expected"),
    [
        # A delivery after another: the earlier one's outcome may be in the ledger alone.
        (2, True, None, NOW, False),
        (2, False, NOW - 5, NOW - DAY, False),
        (1, False, NOW - 5, NOW - DAY, True),  # fresh, sent after the gate began remembering
        (1, True, NOW - 5, NOW - DAY, False),  # the broker calls it a redelivery
        (1, False, None, NOW - DAY, False),  # no publish time: cannot tell
        (1, False, NOW - DAY - 1, NOW - DAY, False),  # sent before the gate remembered
        (1, False, NOW - TTL + TTL_MARGIN_S, NOW - 30 * DAY, True),  # within the lifetime
        (1, False, NOW - TTL + TTL_MARGIN_S - 1, NOW - 30 * DAY, False),  # keys may be gone
    ],
)
def test_the_gate_alone_is_trusted_only_when_it_cannot_have_forgotten(
    deliveries: int, redelivered: bool, sent_at: float | None, since: float, expected: bool
) -> None:
    assert (
        trusted(
            deliveries=deliveries,
            redelivered=redelivered,
            sent_at=sent_at,
            since=since,
            now=NOW,
            ttl_s=TTL,
        )
        is expected
    )


@pytest.mark.parametrize(
    ("deliveries", "ledger", "expected"),
    [
        (1, None, (None, 1)),  # no row, or the ledger unreachable: the gate's count
        (1, ("running", 2), (None, 3)),  # the ledger counted two: this is the third
        (4, ("running", 2), (None, 4)),  # the gate's larger count stands
        (1, ("queued", 0), (None, 1)),
        (1, ("completed", 1), ("completed", 1)),  # finished: not run again
        (1, ("dead", 5), ("dead", 5)),
        (1, ("cancelled", 0), ("cancelled", 0)),
        (1, ("failed", 3), ("failed", 3)),
    ],
)
def test_the_ledger_row_can_finish_a_delivery_or_raise_its_count(
    deliveries: int, ledger: tuple[str, int] | None, expected: tuple[str | None, int]
) -> None:
    assert reconcile(deliveries, ledger) == expected


@pytest.mark.parametrize(
    ("deliveries", "attempt", "max_redeliveries", "verdict"),
    [
        (1, 1, 0, Verdict.RUN),
        (2, 1, 0, Verdict.OVER_CAP),  # no redelivery allowed
        (2, 1, 1, Verdict.RUN),  # one redelivery allowed
        (3, 1, 1, Verdict.OVER_CAP),
        (3, 3, 1, Verdict.RUN),  # each retry is an attempt owed a delivery
        (5, 3, 1, Verdict.OVER_CAP),
    ],
)
def test_a_delivery_beyond_the_cap_is_over_it(
    deliveries: int, attempt: int, max_redeliveries: int, verdict: Verdict
) -> None:
    assert within_cap(deliveries, attempt, max_redeliveries) is verdict


@pytest.mark.parametrize(
    ("status", "deliveries", "locked", "verdict"),
    [
        (JobStatus.QUEUED, 1, True, Verdict.RUN),
        (JobStatus.RUNNING, 2, True, Verdict.RUN),  # a dead session's job, taken over
        (JobStatus.RUNNING, 2, False, Verdict.BUSY),  # a live session holds its lock
        (JobStatus.COMPLETED, 2, True, Verdict.FINISHED),
        (JobStatus.COMPLETED, 2, False, Verdict.FINISHED),  # finished beats busy
        (JobStatus.DEAD, 9, False, Verdict.FINISHED),
        (JobStatus.RUNNING, 4, True, Verdict.OVER_CAP),
    ],
)
def test_a_claim_made_in_postgresql(
    status: JobStatus, deliveries: int, locked: bool, verdict: Verdict
) -> None:
    assert in_ledger(status.value, deliveries, locked, 1, 2) is verdict
