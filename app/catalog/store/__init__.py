"""The catalog's SQL: every statement on its tables, named, one module per concept.

As the alerts keep theirs in :mod:`app.services.alert_store`, the catalog keeps its SQL
here: each statement is a constant with a line saying what it does, run through
SQLAlchemy on the caller's connection, so that one transaction spans what the caller
does (a whole seed, one batch of a sync). Migrations aside (``0010_catalog``), no other
module writes SQL on these tables.

* :mod:`~app.catalog.store.tables`: the catalog as a whole (row counts, the database's
  time, planner statistics);
* :mod:`~app.catalog.store.seeding`: the seed's bulk loading (its lock, categories,
  reserved ids, ``unnest`` inserts);
* :mod:`~app.catalog.store.products`: products and the category tree (reads, audited
  edits and soft deletes, popularity, the cleanups' deletes);
* :mod:`~app.catalog.store.inventory`: stock levels;
* :mod:`~app.catalog.store.orders`: order states, sales figures, old cancelled orders;
* :mod:`~app.catalog.store.audit`: the domain's audit log;
* :mod:`~app.catalog.store.cursors`: where incremental jobs stopped;
* :mod:`~app.catalog.store.search_index`: the search index's documents;
* :mod:`~app.catalog.store.exports`: the data exports' rows.

Each function is also importable from this package under its own name
(``store.update_product``), as callers knew it when all of this was one module.
"""

from __future__ import annotations

from app.catalog.store import (
    audit,
    cursors,
    exports,
    inventory,
    orders,
    products,
    search_index,
    seeding,
    tables,
)
from app.catalog.store.audit import (
    purge_audit,
    record_audit,
)
from app.catalog.store.cursors import (
    load_cursor,
    save_cursor,
)
from app.catalog.store.exports import (
    EXPORTS,
    export_count,
    export_rows,
)
from app.catalog.store.inventory import (
    inventory_report,
    low_stock,
    set_stock,
    stock_counts,
)
from app.catalog.store.orders import (
    ORDER_STATUSES,
    purge_cancelled_orders,
    report_by_status,
    report_products_sold,
    revenue_by_category,
    sales_per_day,
    top_products,
)
from app.catalog.store.products import (
    category_tree,
    count_inactive,
    delete_inactive,
    popular_products,
    product,
    purge_soft_deleted,
    soft_delete_product,
    update_popularity,
    update_product,
)
from app.catalog.store.search_index import (
    TEXT_SEARCH_CONFIG,
    indexed,
    search,
    sync_search_batch,
)
from app.catalog.store.seeding import (
    RESERVABLE,
    ensure_category,
    has_products,
    insert_customers,
    insert_inventory,
    insert_order_lines,
    insert_orders,
    insert_products,
    lock_seeding,
    reserve_ids,
)
from app.catalog.store.tables import (
    analyze,
    counts,
    now,
)

__all__ = [
    "EXPORTS",
    "ORDER_STATUSES",
    "RESERVABLE",
    "TEXT_SEARCH_CONFIG",
    "analyze",
    "audit",
    "category_tree",
    "count_inactive",
    "counts",
    "cursors",
    "delete_inactive",
    "ensure_category",
    "export_count",
    "export_rows",
    "exports",
    "has_products",
    "indexed",
    "insert_customers",
    "insert_inventory",
    "insert_order_lines",
    "insert_orders",
    "insert_products",
    "inventory",
    "inventory_report",
    "load_cursor",
    "lock_seeding",
    "low_stock",
    "now",
    "orders",
    "popular_products",
    "product",
    "products",
    "purge_audit",
    "purge_cancelled_orders",
    "purge_soft_deleted",
    "record_audit",
    "report_by_status",
    "report_products_sold",
    "reserve_ids",
    "revenue_by_category",
    "sales_per_day",
    "save_cursor",
    "search",
    "search_index",
    "seeding",
    "set_stock",
    "soft_delete_product",
    "stock_counts",
    "sync_search_batch",
    "tables",
    "top_products",
    "update_popularity",
    "update_product",
]
