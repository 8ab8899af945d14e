"""The sample catalog domain: the business data Conveyor's recurring jobs work on.

* :mod:`~app.catalog.store`: every statement on the catalog's tables, named, one module
  per concept (products, inventory, orders, the audit log, the search index…);
* :mod:`~app.catalog.seed`: realistic sample data (Faker), inserted in batches, from the
  words and category tree of :mod:`~app.catalog.vocabulary`;
* :mod:`~app.catalog.search`: the full-text search index (PostgreSQL), synced
  incrementally from products' ``updated_at``;
* :mod:`~app.catalog.cli`: ``python -m app catalog seed``.

Plain SQLAlchemy on :func:`app.db.engine`; it knows nothing of Celery, tasks, beat or
the web (an import contract keeps it so). The tables are migration ``0010_catalog``.
"""
