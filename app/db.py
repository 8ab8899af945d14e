"""SQLAlchemy engines for PostgreSQL, one per process and URL."""

from __future__ import annotations

import functools

from sqlalchemy import Engine, create_engine

from config.settings import get_settings


def engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (the configured database by default), pinged before use."""
    return _engine(url or get_settings().database_url, get_settings().database.pool_size)


@functools.cache
def _engine(url: str, pool_size: int) -> Engine:
    # A connect timeout: an unreachable server (packets dropped) fails in seconds, not minutes.
    return create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )
