"""The servers plugin: PostgreSQL, Redis and RabbitMQ for the tiers that need them.

The integration, acceptance and browser tiers call :func:`provision` from their
``pytest_configure``, which pytest calls as each conftest is imported, before that
directory's test modules are collected. The first call finds or starts the
servers (:mod:`tests.services`), creates the run's database, points
``CONVEYOR_*`` at them, reconfigures what Conveyor already built from its settings
and registers this module as a plugin: its fixtures (``broker``, ``redis_broker``)
and its teardown. The unit tier never calls it, so it runs with no server at all.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.services import ROOT, Services
from tests.services import provision as find_servers

#: Redis database the suite uses, apart from anything else on the machine's Redis
#: (``CONVEYOR_TEST_REDIS_DB`` picks another, so that two runs can share one Redis).
#: Each parallel test process (pytest-xdist's ``gw0``, ``gw1``…) takes the next one.
TEST_REDIS_DB = int(os.environ.get("CONVEYOR_TEST_REDIS_DB", "11")) + int(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0
)

_services: Services | None = None
_database: str | None = None
#: Why provisioning failed: the next tier to ask raises it again instead of retrying.
_failure: BaseException | None = None


def _plain(url: str) -> str:
    """A psycopg URL from a SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def provision(config: pytest.Config) -> None:
    """Provide the servers and a fresh database for this run, once, and configure Conveyor."""
    global _failure
    if _failure is not None:
        raise _failure
    if _services is not None:
        return
    try:
        _provision()
    except BaseException as exc:
        _failure = exc
        raise
    config.pluginmanager.register(sys.modules[__name__], "conveyor-servers")


def _provision() -> None:
    """Find the servers, create the database, set the variables and migrate; undo on failure."""
    global _services, _database
    found = find_servers()
    database = f"conveyor_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(_plain(found.postgres_admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        _services, _database = found, database
        admin = found.postgres_admin_url
        os.environ["CONVEYOR_PROFILE"] = "test"
        os.environ["CONVEYOR_DATABASE__URL"] = admin.rsplit("/", 1)[0] + f"/{database}"
        os.environ["CONVEYOR_BROKER__URL"] = f"{found.redis_base_url}/{TEST_REDIS_DB}"
        # Caches and the delivery gate stay here whichever broker a test points at.
        os.environ["CONVEYOR_CACHE__URL"] = f"{found.redis_base_url}/{TEST_REDIS_DB}"
        os.environ["CONVEYOR_EMBEDDED__DATA_DIR"] = str(ROOT / "var" / "test-run" / database)
        _reconfigure()
        from app.migrate import migrate

        migrate()
    except BaseException:
        _teardown()
        found.stop()
        raise


def _reconfigure() -> None:
    """Make Conveyor read the variables just set, whatever imported it before.

    A conftest's own imports (``probe_tasks``) or a test module collected earlier
    build the Celery app from the environment as it was. The app is configured
    again; everything else reads ``get_settings()`` when used (``app.db`` caches
    engines per URL), except the task base class's retry limits, which the suite
    leaves at their defaults, and Django's settings, which cannot be redone.
    """
    if "config.django_settings" in sys.modules:
        raise RuntimeError(
            "config.django_settings was imported before the test servers were provisioned, "
            "so Django points at another database; set Django up lazily "
            "(beat.service.ensure_django) in a test module, not at a conftest's import"
        )
    from config.settings import get_settings

    get_settings.cache_clear()
    if "app.celery" in sys.modules:
        from app.celery import app

        configure(app, get_settings())


def _teardown() -> None:
    """Drop the run's database (if it was created)."""
    global _services, _database
    found, database, _services, _database = _services, _database, None, None
    if found is None or database is None:
        return
    with psycopg.connect(_plain(found.postgres_admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """Say which servers this run uses (a header is too early: tiers provision late)."""
    found = services()
    return [
        f"postgres: {found.postgres_admin_url} (database {_database})",
        f"redis: {found.redis_base_url}/{TEST_REDIS_DB}",
        f"rabbitmq: {found.rabbitmq_url}",
        *found.notes,
    ]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop the run's database and stop the servers the run started."""
    found = _services
    if found is None:
        return
    from app.db import engine
    from app.jobs import lifecycle

    lifecycle.recorder().close()
    engine().dispose()
    try:
        _teardown()
    finally:
        found.stop()


@dataclass(frozen=True)
class Broker:
    """One broker the acceptance tests run against."""

    name: str
    url: str

    @property
    def is_redis(self) -> bool:
        """True for Redis."""
        return self.name == "redis"


def services() -> Services:
    """The provisioned servers."""
    if _services is None:
        raise RuntimeError(
            "no test servers: only tests/integration, tests/acceptance and tests/browser "
            "provision them (their conftest calls tests.servers.provision)"
        )
    return _services


def database_url() -> str:
    """SQLAlchemy URL of this run's database."""
    return os.environ["CONVEYOR_DATABASE__URL"]


def configure(celery_app: Any, settings: Any) -> None:
    """Point ``celery_app`` at the servers of ``settings``, dropping cached connections.

    Only a test process talks to two brokers in turn: it re-points the one producer
    app, which means clearing Celery's and kombu's private connection caches here.
    """
    from kombu import pools as kombu_pools

    from app.celery import celery_config

    celery_app.conf.update(celery_config(settings))
    celery_app.conf.conveyor_settings = settings
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.__dict__.pop("amqp", None)  # queues, router and producer pool
    celery_app._local.__dict__.pop("backend", None)
    celery_app._backend_cache = None


def use_broker(name: str) -> Iterator[Broker]:
    """Point the producer app at broker ``name`` with its queues empty; undo afterwards."""
    from app.celery import app
    from config.settings import get_settings

    url = (
        f"{services().redis_base_url}/{TEST_REDIS_DB}"
        if name == "redis"
        else services().rabbitmq_url
    )
    settings = get_settings().model_copy(
        update={"broker": get_settings().broker.model_copy(update={"url": url})}
    )
    configure(app, settings)
    purge_queues(app)
    try:
        yield Broker(name, url)
    finally:
        purge_queues(app)
        configure(app, get_settings())


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each broker in turn, with the producer app pointed at it and its queues empty."""
    yield from use_broker(request.param)


@pytest.fixture
def redis_broker() -> Iterator[Broker]:
    """Redis alone, for behaviour only Redis has."""
    yield from use_broker("redis")


def purge_queues(celery_app: object) -> None:
    """Empty the five work queues."""
    with celery_app.connection_for_write() as conn:  # type: ignore[attr-defined]
        channel = conn.default_channel
        for queue in celery_app.amqp.queues.values():  # type: ignore[attr-defined]
            bound = queue(channel)
            bound.declare()
            bound.purge()
