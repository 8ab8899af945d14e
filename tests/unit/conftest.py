"""The unit tier: pure logic, so nothing here provisions or contacts a server."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def no_conveyor_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide ``CONVEYOR_*`` variables from each unit test, restored afterwards."""
    # A run that also collects the server tiers (plain ``pytest``) points them at its
    # servers; settings a unit test builds then read what they read without servers.
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)
