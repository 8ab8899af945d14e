"""Held messages: release_at and publish_options, replacing the due-at index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("release_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("publish_options", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.drop_index(
        "ix_jobs_due", table_name="jobs", postgresql_where=sa.text("status = 'scheduled'")
    )
    op.create_index(
        "ix_jobs_release",
        "jobs",
        ["release_at"],
        unique=False,
        postgresql_where=sa.text("release_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_jobs_release", table_name="jobs", postgresql_where=sa.text("release_at IS NOT NULL")
    )
    op.create_index(
        "ix_jobs_due",
        "jobs",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.drop_column("jobs", "publish_options")
    op.drop_column("jobs", "release_at")
