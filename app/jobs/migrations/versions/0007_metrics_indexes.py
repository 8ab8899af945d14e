"""Jobs by when they finished, retries by when they happened: what /metrics reads

``conveyor_task_runs`` and ``conveyor_task_duration_seconds`` cover the attempts that
ended in the last ``web.metrics_window_s``: the jobs that finished then (their rows)
and the retries recorded then (their ``retrying`` events). Without these indexes that
read scans every job and every event the ledger keeps. Both are partial, so only the
rows they serve are indexed, and built concurrently, so that the recorders' writes go
on while they build on a large ledger.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_jobs_finished",
            "jobs",
            ["finished_at"],
            unique=False,
            postgresql_where=sa.text("finished_at IS NOT NULL"),
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_job_events_retrying_at",
            "job_events",
            ["at"],
            unique=False,
            postgresql_where=sa.text("to_status = 'retrying'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_job_events_retrying_at", "job_events", postgresql_concurrently=True)
        op.drop_index("ix_jobs_finished", "jobs", postgresql_concurrently=True)
