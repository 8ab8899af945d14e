"""The integration tier runs against real PostgreSQL, Redis and RabbitMQ."""

from __future__ import annotations

import pytest

from tests import servers


def pytest_configure(config: pytest.Config) -> None:
    """Provision the servers (once per run, whichever tier asks first)."""
    # pytest calls this as it imports this file, before it collects the tier's modules.
    servers.provision(config)
