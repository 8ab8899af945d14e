"""Overlap state in a column: jobs.waits_for, not a ':next' suffix on job_name

A schedule with the overlap policy queue_one kept its waiting run as the job
``schedule:<name>:next`` and beat renamed it when the run before it ended. The
waiting run now has no name and ``waits_for`` = the name it waits for, unique
among unfinished jobs (one waiting run per schedule).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('scheduled','queued','running','retrying')"
#: What beat appended to a waiting run's job name before this revision.
SUFFIX = ":next"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("waits_for", sa.String(length=200), nullable=True))
    op.execute(
        sa.text(
            "UPDATE jobs SET waits_for = left(job_name, -5), job_name = NULL "
            "WHERE job_name LIKE 'schedule:%' AND right(job_name, 5) = :suffix"
        ).bindparams(suffix=SUFFIX)
    )
    op.create_index(
        "ux_jobs_waiting",
        "jobs",
        ["waits_for"],
        unique=True,
        postgresql_where=sa.text(f"waits_for IS NOT NULL AND {ACTIVE}"),
    )


def downgrade() -> None:
    op.drop_index(
        "ux_jobs_waiting",
        table_name="jobs",
        postgresql_where=sa.text(f"waits_for IS NOT NULL AND {ACTIVE}"),
    )
    op.execute(
        sa.text(
            "UPDATE jobs SET job_name = waits_for || :suffix WHERE waits_for IS NOT NULL"
        ).bindparams(suffix=SUFFIX)
    )
    op.drop_column("jobs", "waits_for")
