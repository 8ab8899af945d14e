"""Services: one row per service and host, its state and heartbeat

The services runtime (app/services) writes a row for each service it runs on a
host: its state, heartbeat, last success and error, consecutive errors and the
items it processed, for health, the API and the console. Every statement on it is
in app/services/store.py. ``identity`` is the writing process's lease identity
(host:pid:tag), so the row of a singleton's lease holder can be told; ``id`` is a
single-column key for the console's read-only Django model (the key is name, host).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("identity", sa.String(200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_errors", sa.Integer, nullable=False, server_default="0"),
        sa.Column("items_processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("detail", postgresql.JSONB, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("services")
