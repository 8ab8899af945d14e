"""Stored files: their metadata

One row per file that app.storage keeps under its root: the name it is stored under
(unique; its index uses ``text_pattern_ops`` so that it also serves listings by
prefix), content type, size, SHA-256, when it was made and expires, and the job that
made it. ``job_id`` is no foreign key: a file may outlive its job's retention. Every
statement on the table is in app/storage/store.py.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.CheckConstraint("size_bytes >= 0", name="ck_stored_files_size"),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="ck_stored_files_sha256"),
    )
    op.create_index(
        "ux_stored_files_name",
        "stored_files",
        ["name"],
        unique=True,
        postgresql_ops={"name": "text_pattern_ops"},
    )
    # The retention purge takes the oldest expiries first.
    op.create_index("ix_stored_files_expires", "stored_files", ["expires_at"])


def downgrade() -> None:
    op.drop_table("stored_files")
