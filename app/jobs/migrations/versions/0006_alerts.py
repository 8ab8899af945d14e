"""Alerts: one durable record per condition, deduplicated by key

A monitor raises an alert by key; the record counts how often it was seen and
when it was last notified (the cooldown), and is resolved when the condition
clears. Every statement on the table is in app/services/alert_store.py.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The severities app.services.alerts.Severity knows, least urgent first.
SEVERITIES = ("info", "warning", "critical")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False, server_default="1"),
        # NULL until a notification was enqueued (none is while no channel is configured).
        sa.Column("last_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        # What the resolver said (``resolve_alert(key, detail)``); ``detail`` keeps the
        # last word of the condition itself.
        sa.Column("resolution", sa.Text, nullable=True),
        sa.Column("labels", postgresql.JSONB, nullable=True),
        sa.CheckConstraint(
            "severity IN (" + ", ".join(f"'{s}'" for s in SEVERITIES) + ")",
            name="ck_alerts_severity",
        ),
        sa.CheckConstraint("count >= 1", name="ck_alerts_count"),
    )
    # One open alert per key; a resolved one stays as history.
    op.create_index(
        "ux_alerts_open_key",
        "alerts",
        ["key"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_alerts_last_seen", "alerts", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("alerts")
