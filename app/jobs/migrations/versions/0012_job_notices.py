"""Mail about jobs: jobs.notify_to, jobs.notified_finished_at and their partial index

A caller may ask to hear when a job finishes (``notify=`` on enqueue: ``notify_to``);
a dead job is mailed to the recipients its task's pattern names. The notifier
(``conveyor.notifier``, the services process) reads the partial index of finishes it
has not dealt with, and marks each with the ``finished_at`` it dealt with.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: As in app/jobs/models.py at this revision (a migration does not import the model).
NOTICE_DUE = (
    "finished_at IS NOT NULL AND (status = 'dead' OR notify_to IS NOT NULL)"
    " AND notified_finished_at IS DISTINCT FROM finished_at"
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("notify_to", ARRAY(sa.Text), nullable=True))
    op.add_column(
        "jobs", sa.Column("notified_finished_at", sa.DateTime(timezone=True), nullable=True)
    )
    # The dead jobs already in the ledger were never meant to be mailed: dealt with.
    op.execute("UPDATE jobs SET notified_finished_at = finished_at WHERE status = 'dead'")
    op.create_index(
        "ix_jobs_notice_due", "jobs", ["finished_at"], postgresql_where=sa.text(NOTICE_DUE)
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_notice_due", table_name="jobs")
    op.drop_column("jobs", "notified_finished_at")
    op.drop_column("jobs", "notify_to")
