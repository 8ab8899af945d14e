"""Suite-wide: nothing is provisioned here, so ``tests/unit`` runs with no server at all.

The tiers that need PostgreSQL, Redis and RabbitMQ (integration, acceptance,
browser) provision them from their own conftest through :mod:`tests.servers`.
"""

from __future__ import annotations

from typing import Any

import pytest

#: Names that lived here before the servers moved to tests.servers; tests written
#: against them keep working (tests under tests/ import them from tests.servers).
_MOVED = frozenset(
    {
        "TEST_REDIS_DB",
        "Broker",
        "broker",
        "database_url",
        "purge_queues",
        "redis_broker",
        "services",
        "use_broker",
    }
)


def __getattr__(name: str) -> Any:
    """``from tests.conftest import Broker`` and the like, from :mod:`tests.servers`."""
    # Lazily, so that the unit tier, which imports this file, never imports the plugin.
    if name in _MOVED:
        from tests import servers

        return getattr(servers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that say ``STARTS_FIRST = True`` (the longest: minutes of real slots) come
    first, so that the parallel processes (``--dist loadfile``, which hands modules out in
    this order) take them up at the start rather than leave them for a long tail."""
    items.sort(key=lambda item: not getattr(getattr(item, "module", None), "STARTS_FIRST", False))
