"""A worker's memory in its heartbeat: workers.rss_bytes

Each heartbeat records the resident memory of the worker's largest process (its main
process or a pool child), so that a monitor can alert on a worker over its limit
without reaching into the worker's machine.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("rss_bytes", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "rss_bytes")
