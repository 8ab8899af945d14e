"""Where every no-op task writes down when it was sent and when it started.

Each task appends ``"<sent> <started>"`` (``time.time()`` floats) to a Redis
list, one ``RPUSH`` per task, the same cost for every variant; a batch task does
the same for each of its items, so a sample is one item executed. The benchmark
reads the list afterwards. The probe Redis is never the broker's database.

The probe is benchmark tooling, not Conveyor configuration, so its location
reaches worker processes through two variables of its own rather than
``config.settings``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import redis

#: Redis URL of the probe (a database the broker does not use).
URL_ENV = "CONVEYOR_BENCH_PROBE_URL"
#: Name of the list this trial's tasks append to.
KEY_ENV = "CONVEYOR_BENCH_PROBE_KEY"

_client: redis.Redis | None = None


def record(sent: float) -> None:
    """Append this task's send and start times to the probe list."""
    started = time.time()
    global _client
    if _client is None:  # one connection per pool process, opened after the fork
        _client = redis.Redis.from_url(os.environ[URL_ENV])
    _client.rpush(os.environ[KEY_ENV], f"{sent!r} {started!r}")


@dataclass(frozen=True)
class Sample:
    """One task as the probe saw it: when it was sent and when it started (epoch s)."""

    sent: float
    started: float

    @property
    def latency_s(self) -> float:
        """Enqueue→start, seconds."""
        return self.started - self.sent


class ProbeReader:
    """The benchmark's side of the probe list: count, read and clear it."""

    def __init__(self, url: str, key: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.key = key

    def count(self) -> int:
        """How many tasks have started so far."""
        return int(self.client.llen(self.key))

    def take(self) -> list[Sample]:
        """Every sample recorded so far; the list is emptied."""
        pipe = self.client.pipeline()
        pipe.lrange(self.key, 0, -1)
        pipe.delete(self.key)
        raw, _ = pipe.execute()
        samples = []
        for item in raw:
            sent, started = item.split()
            samples.append(Sample(float(sent), float(started)))
        return samples

    def clear(self) -> None:
        """Forget every sample."""
        self.client.delete(self.key)
