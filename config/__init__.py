"""Conveyor configuration: one typed settings object read from the environment."""

from __future__ import annotations

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
