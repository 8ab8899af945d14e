"""Conveyor: durable background jobs on Celery."""

from __future__ import annotations
