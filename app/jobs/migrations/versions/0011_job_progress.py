"""A running job's progress: jobs.progress, progress_message, progress_at

A long job reports how far it is (a percentage and a message) while it runs
(``ConveyorTask.progress``); the API and the console show it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("progress", sa.SmallInteger, nullable=True))
    op.add_column("jobs", sa.Column("progress_message", sa.Text, nullable=True))
    op.add_column("jobs", sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("ck_jobs_progress", "jobs", "progress BETWEEN 0 AND 100")


def downgrade() -> None:
    op.drop_constraint("ck_jobs_progress", "jobs")
    op.drop_column("jobs", "progress_at")
    op.drop_column("jobs", "progress_message")
    op.drop_column("jobs", "progress")
