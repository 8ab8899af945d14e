"""SQLAlchemy engines for PostgreSQL, one per process and URL."""

from __future__ import annotations

import functools

from sqlalchemy import Engine, create_engine

from config.settings import get_settings


@functools.cache
def engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (the configured database by default), pinged before use."""
    settings = get_settings()
    return create_engine(
        url or settings.database_url,
        pool_size=settings.database.pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )
