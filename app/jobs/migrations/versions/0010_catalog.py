"""The sample catalog domain

Categories (a tree), products (soft-deleted by ``deleted_at``), their inventory,
customers, orders with their lines, the domain's audit log, the search index's
documents and the cursors of incremental jobs. Every statement on these tables is in
app/catalog/store/. The indexes are the ones the recurring jobs read by: products
by ``(updated_at, id)`` (the search sync's keyset), by category and by ``deleted_at``
(the cleanup, partial: only deleted rows), inventory by quantity (the stock monitor),
orders by creation time (reports over the last days), and the documents' GIN index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: The states app.catalog.store.ORDER_STATUSES knows, in the order an order goes through.
ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled")


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    op.create_table(
        "catalog_categories",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "parent_id", sa.BigInteger, sa.ForeignKey("catalog_categories.id"), nullable=True
        ),
        sa.Column("name", sa.String(200), nullable=False),
        # The path from the root, e.g. ``electronics/audio``: unique, so seeding twice
        # finds the tree instead of growing a second one.
        sa.Column("slug", sa.String(400), nullable=False, unique=True),
        _created_at(),
    )
    op.create_index("ix_catalog_categories_parent", "catalog_categories", ["parent_id"])

    op.create_table(
        "catalog_products",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "category_id", sa.BigInteger, sa.ForeignKey("catalog_categories.id"), nullable=False
        ),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("popularity_score", sa.Float, nullable=False, server_default="0"),
        _created_at(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("price >= 0", name="ck_catalog_products_price"),
    )
    op.create_index("ix_catalog_products_updated", "catalog_products", ["updated_at", "id"])
    op.create_index("ix_catalog_products_category", "catalog_products", ["category_id"])
    op.create_index(
        "ix_catalog_products_deleted",
        "catalog_products",
        ["deleted_at"],
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )

    op.create_table(
        "catalog_inventory",
        sa.Column(
            "product_id",
            sa.BigInteger,
            sa.ForeignKey("catalog_products.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("quantity >= 0", name="ck_catalog_inventory_quantity"),
    )
    op.create_index("ix_catalog_inventory_quantity", "catalog_inventory", ["quantity"])

    op.create_table(
        "catalog_customers",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        _created_at(),
    )
    op.create_index(
        "ux_catalog_customers_email",
        "catalog_customers",
        [sa.text("lower(email)")],
        unique=True,
    )

    op.create_table(
        "catalog_orders",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "customer_id", sa.BigInteger, sa.ForeignKey("catalog_customers.id"), nullable=False
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("total", sa.Numeric(14, 2), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")",
            name="ck_catalog_orders_status",
        ),
    )
    op.create_index("ix_catalog_orders_created", "catalog_orders", ["created_at"])
    op.create_index("ix_catalog_orders_customer", "catalog_orders", ["customer_id"])

    op.create_table(
        "catalog_order_lines",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "order_id",
            sa.BigInteger,
            sa.ForeignKey("catalog_orders.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "product_id", sa.BigInteger, sa.ForeignKey("catalog_products.id"), nullable=False
        ),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_catalog_order_lines_quantity"),
        sa.CheckConstraint("unit_price >= 0", name="ck_catalog_order_lines_unit_price"),
    )
    op.create_index("ix_catalog_order_lines_order", "catalog_order_lines", ["order_id"])
    op.create_index("ix_catalog_order_lines_product", "catalog_order_lines", ["product_id"])

    op.create_table(
        "catalog_audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("entity", sa.String(50), nullable=False),
        sa.Column("entity_id", sa.String(100), nullable=True),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("detail", postgresql.JSONB, nullable=True),
    )
    op.create_index(
        "ix_catalog_audit_log_entity", "catalog_audit_log", ["entity", "entity_id", "at"]
    )
    op.create_index("ix_catalog_audit_log_at", "catalog_audit_log", ["at"])

    op.create_table(
        "catalog_search_documents",
        sa.Column(
            "product_id",
            sa.BigInteger,
            sa.ForeignKey("catalog_products.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("document", postgresql.TSVECTOR, nullable=False),
        # The product's ``updated_at`` the document was built from: a sync that reads
        # the product again without a change leaves the document alone.
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_catalog_search_documents_document",
        "catalog_search_documents",
        ["document"],
        postgresql_using="gin",
    )

    op.create_table(
        "catalog_cursors",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    for table in (
        "catalog_cursors",
        "catalog_search_documents",
        "catalog_audit_log",
        "catalog_order_lines",
        "catalog_orders",
        "catalog_customers",
        "catalog_inventory",
        "catalog_products",
        "catalog_categories",
    ):
        op.drop_table(table)
