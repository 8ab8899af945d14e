"""Alembic environment for the job ledger; the URL comes from Conveyor's settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from app.jobs.models import Base
from config.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run() -> None:
    """Apply migrations online, in one transaction."""
    connectable = create_engine(url)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table="conveyor_alembic_version",
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


run()
