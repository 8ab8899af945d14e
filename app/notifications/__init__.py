"""Outgoing notifications (email)."""

from __future__ import annotations
