"""The web process: health checks now; API and console build on it."""

from __future__ import annotations
