"""Worker heartbeats

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 20:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hostname"),
    )
    op.create_index(
        "ix_jobs_running_worker", "jobs", ["worker"], postgresql_where=sa.text("status = 'running'")
    )


def downgrade() -> None:
    op.drop_index(
        "ix_jobs_running_worker", table_name="jobs", postgresql_where=sa.text("status = 'running'")
    )
    op.drop_table("workers")
