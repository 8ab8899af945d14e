"""How long a poller waits before its next look: fast while there is work, slower while idle.

A loop that polls a table (the releaser's due jobs, a change feed) pays for every
empty look, and answers late by up to one interval. :class:`AdaptivePoll` trades
the two: a look that found work is followed by another at ``fast_s``, and each
look that found nothing lengthens the wait by ``factor``, up to ``cap_s``. The
cap is the poller's promise (work that appears while it idles waits at most that
long); the fast interval is how quickly it drains a stream of work.

The seeds' change-data-capture worker uses the same idea with a step table keyed
by consecutive empty polls (up to 5: 50 ms, up to 20: 200 ms, up to 100: 1 s, then
5 s); ``patience`` is its first step: that many empty looks still wait ``fast_s``.
This module is a leaf: it imports nothing of Conveyor's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class AdaptivePoll:
    """The delay before a poller's next look, from what its last looks found."""

    #: Seconds to the next look after one that found work.
    fast_s: float = 0.05
    #: The longest wait, seconds, however long the poller has been idle.
    cap_s: float = 5.0
    #: Each empty look beyond ``patience`` multiplies the wait by this.
    factor: float = 2.0
    #: Empty looks in a row still followed by ``fast_s`` before the wait grows.
    patience: int = 0
    #: Looks in a row that found nothing.
    empty: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.fast_s <= self.cap_s:
            raise ValueError(f"need 0 < fast_s ({self.fast_s}) <= cap_s ({self.cap_s})")
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1 (got {self.factor})")
        if self.patience < 0:
            raise ValueError(f"patience must not be negative (got {self.patience})")

    def next_delay(self, found_work: bool) -> float:
        """Seconds to wait before the next look, given whether this one found work."""
        if found_work:
            self.empty = 0
            return self.fast_s
        self.empty += 1
        grown = self.empty - self.patience
        if grown <= 0 or self.factor == 1:
            return self.fast_s
        # Compared as exponents first, so that a poller idle for days cannot overflow.
        if grown >= math.log(self.cap_s / self.fast_s, self.factor):
            return self.cap_s
        return min(self.cap_s, self.fast_s * self.factor**grown)

    def reset(self) -> None:
        """Forget the idle streak: the next empty look waits as after one that found work."""
        self.empty = 0
