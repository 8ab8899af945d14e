"""The catalog's inventory monitor alerts by email end to end, on Redis and on RabbitMQ
(every test of the module runs on each broker in turn).

A real ``python -m app services`` process runs ``catalog.inventory_monitor`` and raises
the alerts; a real worker delivers them (``alerts.email`` to an SMTP sink, and
``alerts.webhook`` to a hook server): the sink, the hook and the worker are those of
:mod:`tests.acceptance.test_alerts`. The monitor looks once an hour (the specification's
interval, not a setting), and a services process looks as soon as it starts, so each
look here is one services process, stopped after it: the cooldown and every count live
in PostgreSQL, which a restart keeps. The producer's cooldown is an hour, so every look
of a test falls within it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from app.catalog import seed, store
from app.db import engine
from app.jobs.service import JobService
from app.services import alerts
from app.services.catalog import STOCK_ALERT_PREFIX, InventoryMonitor
from tests.acceptance import test_alerts
from tests.acceptance.conftest import wait_for
from tests.acceptance.test_alerts import RECIPIENT, Channels, body
from tests.acceptance.test_services import Services, forget_services, row
from tests.catalog_support import empty_catalog_tables

pytestmark = pytest.mark.acceptance

# The SMTP sink, the hook server and the worker of the alerts tests, on each broker.
alerts_broker = test_alerts.alerts_broker
system = test_alerts.system
channels = test_alerts.channels

HOST = "catalog-monitor-host"
#: The services process is the producer: its cooldown outlasts every test here.
COOLDOWN_S = 3600
MONITOR_ENV = {
    "CONVEYOR_SERVICES__MODULES": json.dumps(["app.services.catalog"]),
    "CONVEYOR_ALERTS__COOLDOWN_S": str(COOLDOWN_S),
}
#: Stock of the products the monitor must flag, by the level it must see.
SHORT = {"out of stock": 0, "critical": 3, "low": 8}
HEALTHY = 50  # above catalog.low_stock (10)


@dataclass(frozen=True)
class Product:
    """A live product of the seeded catalog, and its stock."""

    id: int
    name: str
    quantity: int

    @property
    def key(self) -> str:
        return f"{STOCK_ALERT_PREFIX}{self.id}"


@dataclass(frozen=True)
class Shelves:
    """The products set short, by level, and the healthy ones."""

    short: dict[str, Product]
    healthy: list[Product]


@pytest.fixture
def shelves(channels: Channels) -> Iterator[Shelves]:
    """A small seeded catalog with three products short (0, 3 and 8 in stock) and every
    other one at 50; no service row, no alert, no job, no mail yet."""
    empty_catalog_tables()
    forget_services()
    seed.seed(12, rng_seed=4)
    with engine().begin() as conn:
        live = conn.execute(
            text("SELECT id, name FROM catalog_products WHERE deleted_at IS NULL ORDER BY id")
        ).all()
        assert len(live) > len(SHORT) + 2, "healthy products beside the short ones"
        short = {
            level: Product(p.id, p.name, quantity)
            for (level, quantity), p in zip(SHORT.items(), live, strict=False)
        }
        healthy = [Product(p.id, p.name, HEALTHY) for p in live[len(SHORT) :]]
        for product in [*short.values(), *healthy]:
            assert store.set_stock(conn, product.id, product.quantity), product
    yield Shelves(short, healthy)
    forget_services()
    empty_catalog_tables()


def look(short: int) -> dict[str, Any]:
    """One look of the inventory monitor: a services process that runs it, stopped once
    its row shows the iteration succeeded; the row, which must count ``short`` products."""
    with Services(HOST, InventoryMonitor.name, MONITOR_ENV, heartbeat_interval_s=0.25) as svc:
        found: dict[str, Any] = wait_for(
            lambda: (
                (r := row(InventoryMonitor.name, HOST)) is not None
                and r["pid"] == svc.pid
                and r["last_success_at"] is not None
                and r
            ),
            30,
            "the inventory monitor's first iteration",
        )
    assert found["items_processed"] == short, found
    assert found["consecutive_errors"] == 0 and found["last_error"] is None, found
    return found


def mail_jobs() -> list[dict[str, Any]]:
    """The ``alerts.email`` jobs in the ledger, oldest first, once each completed."""
    jobs = JobService().list(handler=alerts.EMAIL_TASK, limit=100)[0]
    for job in jobs:
        test_alerts.settled(job["id"])
    return sorted(jobs, key=lambda job: job["created_at"])


def stock_alerts() -> dict[str, alerts.Alert]:
    """The catalog's stock alerts, open or resolved, by key."""
    return {a.key: a for a in alerts.recent_alerts(100) if a.key.startswith(STOCK_ALERT_PREFIX)}


def test_each_short_product_alerts_once_within_the_cooldown_and_resolves_after_restock(
    channels: Channels, shelves: Shelves
) -> None:
    look(short=3)
    sent = mail_jobs()
    assert len(sent) == 3, "one email per short product"
    wait_for(lambda: len(channels.inbox.messages) == 3, 30, "three emails in the sink")
    subjects = {
        "out of stock": "[CRITICAL] product {id} is out of stock: 0 left",
        "critical": "[CRITICAL] product {id} is critical: 3 left",
        "low": "[WARNING] product {id} is low: 8 left",
    }
    expected = {subjects[level].format(id=p.id): p for level, p in shelves.short.items()}
    received = {str(m["Subject"]): m for m in channels.inbox.messages}
    assert received.keys() == expected.keys()
    for subject, product in expected.items():
        mail = received[subject]
        text_part = body(mail)
        assert mail["To"] == RECIPIENT
        assert product.name in text_part and f"has {product.quantity} in stock" in text_part
        assert f"product {product.id} is " in text_part and product.key in text_part
    opened = stock_alerts()
    assert opened.keys() == {p.key for p in shelves.short.values()}
    assert not {p.key for p in shelves.healthy} & opened.keys(), "no alert for a healthy one"
    assert {a.severity for a in opened.values()} == {"critical", "warning"}
    assert all(a.count == 1 and a.last_notified_at is not None for a in opened.values())

    for _ in range(2):  # two more looks within the cooldown: seen, not notified
        look(short=3)
    # The notification of a raise is enqueued in the raise's transaction, committed before
    # the row showed the look succeeded: none more exists, so none more can arrive.
    assert len(mail_jobs()) == 3, "no second email within the cooldown"
    assert len(channels.inbox.messages) == 3
    again = stock_alerts()
    assert {key: a.count for key, a in again.items()} == dict.fromkeys(opened, 3)
    assert all(a.is_open for a in again.values())
    assert {k: a.last_notified_at for k, a in again.items()} == {
        k: a.last_notified_at for k, a in opened.items()
    }

    with engine().begin() as conn:
        for product in shelves.short.values():
            store.set_stock(conn, product.id, HEALTHY)
    look(short=0)
    resolved = stock_alerts()
    assert resolved.keys() == opened.keys()
    for key, alert in resolved.items():
        assert not alert.is_open and alert.resolution == "cleared: restocked", key
        assert alert.id == opened[key].id
    assert not [a for a in alerts.open_alerts() if a.key.startswith(STOCK_ALERT_PREFIX)]
    closing = mail_jobs()[3:]
    assert sorted(job["metadata"]["alert_key"] for job in closing) == sorted(opened)
    assert {job["metadata"]["event"] for job in closing} == {"resolved"}
    wait_for(lambda: len(channels.inbox.messages) == 6, 30, "the three resolution emails")
    later = {str(m["Subject"]) for m in channels.inbox.messages} - received.keys()
    assert later == {"[RESOLVED] " + subject.split("] ", 1)[1] for subject in expected}
    wait_for(lambda: len(channels.hook.delivered()) == 6, 30, "the six webhook notices")
    events = sorted(post["alert"]["event"] for post in channels.hook.delivered())
    assert events == ["firing"] * 3 + ["resolved"] * 3
