"""How long a service waits: after errors in a row, and between polls (pure).

After the n-th error in a row a service waits ``base × 2ⁿ⁻¹`` seconds, capped, with
up to a quarter taken off at random so that hosts failing together spread apart.
Since the largest cut is a quarter, each wait is still longer than the one before
until the cap is reached.

A poll loop waits ``services.poll_fast_s`` after a poll that found work, and after
each poll that found none a wait twice as long as the one before, up to its idle
interval (``services.poll_idle_s``, or the service's ``idle``): the adaptive policy
of :mod:`app.polling`. :func:`poll_delays` is the one place that chooses it.
"""

from __future__ import annotations

from typing import Protocol

from app.polling import AdaptivePoll

#: Largest share of a wait that jitter takes off.
JITTER_SHARE = 0.25
#: How much longer each empty poll makes a poll loop's next wait.
POLL_FACTOR = 2.0


def error_delay(errors: int, base_s: float, cap_s: float, jitter: float = 0.0) -> float:
    """Seconds to wait after the ``errors``-th error in a row (``errors`` ≥ 1).

    ``jitter`` in [0, 1) takes up to :data:`JITTER_SHARE` of the wait off (pass
    ``random.random()``; 0 gives the full wait).
    """
    if errors < 1:
        return 0.0
    # min() before the power would overflow for a long run of errors.
    full = cap_s if errors > 64 else min(cap_s, base_s * 2.0 ** (errors - 1))
    return full * (1.0 - JITTER_SHARE * min(max(jitter, 0.0), 1.0))


class PollDelays(Protocol):
    """What a poll loop asks after each poll: how long to wait before the next."""

    def next_delay(self, found_work: bool) -> float:
        """Seconds to wait, given whether the last poll found work."""
        ...


def poll_delays(fast_s: float, idle_s: float) -> PollDelays:
    """The waiting policy of one poll loop: ``fast_s`` after work, growing by
    :data:`POLL_FACTOR` with each empty poll up to ``idle_s``."""
    return AdaptivePoll(fast_s=min(fast_s, idle_s), cap_s=idle_s, factor=POLL_FACTOR)
