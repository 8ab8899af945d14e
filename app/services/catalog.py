"""The sample catalog's three services, singletons (name this module in
``CONVEYOR_SERVICES__MODULES``: ``["app.services.catalog"]``).

* ``catalog.search_sync`` (every 30 min): the search index follows products' changes
  incrementally from its cursor, removing soft-deleted products
  (:func:`app.catalog.search.sync_stored`);
* ``catalog.cache_warmer`` (every 6 h): popular products, the category tree and the
  stock counts into Redis (:func:`app.catalog.cache.warm`, TTLs there);
* ``catalog.inventory_monitor`` (every hour): a monitor that raises ``catalog.stock.<id>`` for
  each live product at or under ``catalog.low_stock`` (critical when out of stock or at
  most ``catalog.critical_stock``) and resolves it once the product is restocked. One
  alert key per product: raised again each hour, it notifies once per
  ``alerts.cooldown_s``.

The catalog's recurring jobs are tasks (:mod:`tasks.catalog`) fired by beat.
"""

from __future__ import annotations

from app.catalog import cache, inventory, search
from app.catalog.inventory import StockLevel
from app.services import alerts
from app.services.base import Mode, Service
from config.settings import get_settings

#: Alert keys of stock shortages: ``catalog.stock.<product id>``.
STOCK_ALERT_PREFIX = "catalog.stock."


class SearchSync(Service):
    """Bring the search index up to date with products changed since its cursor."""

    name = "catalog.search_sync"
    every = "30m"
    mode = Mode.SINGLETON

    def iterate(self) -> int:
        result = search.sync_stored()
        self.detail = {
            "indexed": result.indexed,
            "removed": result.removed,
            "read": result.read,
            "cursor": None if result.cursor is None else result.cursor.isoformat(),
        }
        return result.indexed + result.removed


class CacheWarmer(Service):
    """Load the catalog's most read data into Redis before anyone asks."""

    name = "catalog.cache_warmer"
    every = "6h"
    mode = Mode.SINGLETON

    def iterate(self) -> int:
        warmed = cache.warm()
        self.detail = dict(warmed)
        return warmed["products"] + warmed["categories"]


class InventoryMonitor(Service):
    """Live products out of stock, critical or low: one alert each, resolved on restock.

    It raises and resolves through :func:`app.services.alerts.reconcile`, as Conveyor's
    monitors do (labelled with its name, so it resolves only its own alerts).
    """

    name = "catalog.inventory_monitor"
    every = "1h"
    mode = Mode.SINGLETON

    def iterate(self) -> int:
        """Raise an alert per shortage, resolve those restocked; how many are short."""
        limits = get_settings().catalog
        found = inventory.shortages()
        conditions = [
            alerts.Condition(
                f"{STOCK_ALERT_PREFIX}{short.product_id}",
                alerts.Severity.WARNING
                if short.level is StockLevel.LOW
                else alerts.Severity.CRITICAL,
                f"product {short.product_id} is {short.level.value.replace('_', ' ')}: "
                f"{short.quantity} left",
                f"{short.name!r} has {short.quantity} in stock (critical at "
                f"{limits.critical_stock}, low at {limits.low_stock})",
                {
                    "product_id": short.product_id,
                    "quantity": short.quantity,
                    "level": short.level.value,
                },
            )
            for short in found
        ]
        alerts.reconcile(self.name, conditions, "cleared: restocked")
        self.detail = {
            level.value: sum(1 for short in found if short.level is level)
            for level in (StockLevel.OUT_OF_STOCK, StockLevel.CRITICAL, StockLevel.LOW)
        }
        return len(found)
