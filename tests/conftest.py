"""Suite-wide setup: real servers, one database per run, a broker fixture per broker.

Before any Conveyor module is imported, this points ``CONVEYOR_*`` at the test
servers, so the Celery app the tests publish through is configured for them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.services import ROOT, Services, provision

#: Redis database the suite uses, apart from anything else on the machine's Redis
#: (``CONVEYOR_TEST_REDIS_DB`` picks another, so that two runs can share one Redis).
TEST_REDIS_DB = int(os.environ.get("CONVEYOR_TEST_REDIS_DB", "11"))

_services: Services | None = None
_database: str | None = None


def _plain(url: str) -> str:
    """A psycopg URL from a SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _setup() -> None:
    """Provision servers and a fresh database, then configure Conveyor for them.

    Runs when this file is imported, before any test module or nested conftest
    imports the Celery app, which reads its settings at import.
    """
    global _services, _database
    _services = provision()
    _database = f"conveyor_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_plain(_services.postgres_admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{_database}"')
    admin = _services.postgres_admin_url
    os.environ["CONVEYOR_PROFILE"] = "test"
    os.environ["CONVEYOR_DATABASE__URL"] = admin.rsplit("/", 1)[0] + f"/{_database}"
    os.environ["CONVEYOR_BROKER__URL"] = f"{_services.redis_base_url}/{TEST_REDIS_DB}"
    # Caches and the delivery gate stay here whichever broker a test points at.
    os.environ["CONVEYOR_CACHE__URL"] = f"{_services.redis_base_url}/{TEST_REDIS_DB}"
    os.environ["CONVEYOR_EMBEDDED__DATA_DIR"] = str(ROOT / "var" / "test-run" / _database)
    from config.settings import get_settings

    get_settings.cache_clear()
    from app.migrate import migrate

    migrate()


_setup()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which servers this run uses."""
    assert _services is not None
    return [
        f"postgres: {_services.postgres_admin_url} (database {_database})",
        f"redis: {_services.redis_base_url}/{TEST_REDIS_DB}",
        f"rabbitmq: {_services.rabbitmq_url}",
        *_services.notes,
    ]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop the run's database and stop embedded servers."""
    if _services is None:
        return
    from app.db import engine
    from app.jobs import lifecycle

    lifecycle.recorder().close()
    engine().dispose()
    try:
        with psycopg.connect(_plain(_services.postgres_admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_database}" WITH (FORCE)')
    finally:
        _services.stop()


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
    assert _services is not None
    return _services


def database_url() -> str:
    """SQLAlchemy URL of this run's database."""
    return os.environ["CONVEYOR_DATABASE__URL"]


def use_broker(name: str) -> Iterator[Broker]:
    """Point the producer app at broker ``name`` with its queues empty; undo afterwards."""
    from app.celery import app, configure
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
    """Empty the five work queues and the dead-letter queue."""
    from app.celery import dead_letter_queue

    with celery_app.connection_for_write() as conn:  # type: ignore[attr-defined]
        channel = conn.default_channel
        for queue in [*celery_app.amqp.queues.values(), dead_letter_queue()]:  # type: ignore[attr-defined]
            bound = queue(channel)
            bound.declare()
            bound.purge()
