"""The claim's verdict table: what the facts of one delivery decide, with no I/O.

:class:`app.jobs.claim.Claims` gathers the facts (the gate's reply, the ledger's
row, whether a holder's process still exists) and asks these functions what they
mean, so every rule of the table is tested without a server
(``tests/unit/test_claim_verdict.py``):

======================================  =========================================
facts                                   verdict
======================================  =========================================
the gate or the ledger says finished    ``FINISHED``: acknowledge, do not run
another live delivery holds the job     ``BUSY``: deliver it again later
its holder is gone                      taken over, then as a fresh claim
a count the gate may have forgotten,    checked against the ledger's row
or a delivery after another
deliveries beyond one per attempt       ``OVER_CAP`` past ``max_redeliveries``
everything else                         ``RUN``
======================================  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from app.jobs.models import FINISHED

if TYPE_CHECKING:
    from app.jobs.gate import Holder

#: Longest a duplicate of a running job waits before it is delivered again, seconds.
BUSY_RETRY_MAX_S = 30.0
#: A message is trusted to the gate only if published this long within its key lifetime.
TTL_MARGIN_S = 60.0


class Verdict(StrEnum):
    """What the worker does with a delivery."""

    RUN = "run"
    FINISHED = "finished"  #: ran to an end before: acknowledge, do not run
    BUSY = "busy"  #: another delivery of it is running now
    OVER_CAP = "over_cap"  #: redelivered too often: dead


@dataclass(frozen=True)
class Claim:
    """The verdict on one delivery and the numbers behind it."""

    verdict: Verdict
    status: str | None = None
    deliveries: int = 0
    #: For BUSY: when to deliver the duplicate again, seconds.
    retry_after_s: float = 0.0


def busy_wait_s(lease_left_s: float) -> float:
    """How long a duplicate of a running job waits: until its holder's lease ends,
    at least a second and at most :data:`BUSY_RETRY_MAX_S`."""
    return min(max(lease_left_s, 1.0), BUSY_RETRY_MAX_S)


def holder_gone(holder: Holder, me: Holder, *, exited_here: bool) -> bool | None:
    """Whether ``holder`` can no longer be running its job.

    ``exited_here`` says that ``holder`` is a process of this machine that has
    exited. None means this machine cannot tell: the holder is on another one,
    which is gone when its worker stopped heartbeating (the ledger knows).
    """
    if holder.host == me.host and holder.pid == me.pid:
        return True  # this process, which runs one delivery at a time: this one
    if exited_here:
        return True
    if holder.host == me.host:
        return False
    return None


def trusted(
    *,
    deliveries: int,
    redelivered: bool,
    sent_at: float | None,
    since: float,
    now: float,
    ttl_s: float,
) -> bool:
    """Whether the gate's word on a delivery can stand without the ledger's.

    It can for a first delivery the broker does not call a redelivery, whose
    message was published after the gate began remembering (``since``) and well
    within the gate's key lifetime (``ttl_s``), so any earlier delivery would be
    counted there. A delivery after another (a redelivery, a takeover from a dead
    holder, a retry) is checked in PostgreSQL: the earlier one may have ended with
    an outcome the gate could not take (a full or failing Redis), which its
    process wrote to the ledger.
    """
    if deliveries > 1:
        return False
    return (
        not redelivered
        and sent_at is not None
        and sent_at >= since
        and sent_at >= now - ttl_s + TTL_MARGIN_S
    )


def reconcile(deliveries: int, ledger: tuple[str, int] | None) -> tuple[str | None, int]:
    """The gate's count against the ledger's row ``(status, deliveries)``.

    Returns ``(status, deliveries)``: the status when the ledger says the job
    finished (the delivery must not run), else None with the larger of the two
    counts (the ledger's counted deliveries plus this one). Without a row, or
    with the ledger unreachable, the gate's count stands.
    """
    if ledger is None:
        return None, deliveries
    status, counted = ledger
    if status in FINISHED:
        return status, counted
    return None, max(deliveries, counted + 1)


def within_cap(deliveries: int, attempt: int, max_redeliveries: int) -> Verdict:
    """``RUN``, or ``OVER_CAP`` when delivered more than ``max_redeliveries``
    times beyond the one each attempt (retry) is owed."""
    return Verdict.OVER_CAP if deliveries - attempt > max_redeliveries else Verdict.RUN


def in_ledger(
    status: str, deliveries: int, locked: bool, attempt: int, max_redeliveries: int
) -> Verdict:
    """The verdict of a claim made in PostgreSQL: its row's ``status`` and counted
    ``deliveries`` (this one included), and whether this session took its lock."""
    if status in FINISHED:
        return Verdict.FINISHED
    if not locked:  # a live session holds it
        return Verdict.BUSY
    return within_cap(deliveries, attempt, max_redeliveries)
