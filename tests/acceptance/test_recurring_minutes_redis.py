"""A recurring job on minute slots, on Redis (:mod:`tests.acceptance.recurring_minutes`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.acceptance import test_recurring
from tests.acceptance.conftest import Effects
from tests.acceptance.recurring_minutes import (
    TIMEOUT_S,
    fires_each_minute_follows_its_update_and_stops_when_deleted,
)
from tests.servers import Broker, use_broker

pytestmark = pytest.mark.acceptance
#: Six minutes: taken up first by the parallel processes (tests/conftest.py).
STARTS_FIRST = True

clean = test_recurring.clean


@pytest.fixture
def on_redis() -> Iterator[Broker]:
    yield from use_broker("redis")


@pytest.mark.timeout(TIMEOUT_S)
def test_a_recurring_job_fires_each_minute_follows_its_update_and_stops_when_deleted(
    on_redis: Broker, clean: Effects
) -> None:
    fires_each_minute_follows_its_update_and_stops_when_deleted(on_redis, clean)
