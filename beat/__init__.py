"""Scheduling: recurring jobs, stored in django-celery-beat's tables."""

from __future__ import annotations
