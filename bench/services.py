"""The servers a benchmark needs: brokers to compare, PostgreSQL for results, the probe Redis.

Local servers are used when they answer. A broker that does not answer is
skipped with a printed reason; PostgreSQL and the probe Redis are replaced by
embedded servers (:mod:`app.embedded`) under a temporary directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from app.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from config.settings import mask_url

#: Seconds to wait for a server to answer before calling it unreachable.
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Broker:
    """A broker to benchmark on, and why it cannot be used (None when it can)."""

    name: str
    url: str
    problem: str | None = None


@dataclass(frozen=True)
class Backing:
    """Where results and probe samples go during the benchmark."""

    database_url: str
    probe_url: str
    notes: tuple[str, ...]


def redis_problem(url: str) -> str | None:
    """None when Redis at ``url`` answers PING, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        client.ping()
        client.close()
    except Exception as exc:  # any failure means "not usable", and says why
        return f"{type(exc).__name__}: {exc}"
    return None


def rabbitmq_problem(url: str) -> str | None:
    """None when RabbitMQ at ``url`` accepts an AMQP connection, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # any failure means "not usable", and says why
        return f"{type(exc).__name__}: {exc}"
    return None


def postgres_problem(url: str) -> str | None:
    """Create the database of ``url`` unless it exists; None on success, else why not."""
    import psycopg

    parts = urlsplit(url.replace("+psycopg", "", 1))
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # any failure means "not usable", and says why
        return f"{type(exc).__name__}: {exc}"
    return None


def brokers(wanted: str, redis_url: str, rabbitmq_url: str) -> list[Broker]:
    """The brokers asked for (``redis``, ``rabbitmq`` or ``both``), each checked."""
    found = []
    if wanted in ("redis", "both"):
        found.append(Broker("redis", redis_url, redis_problem(redis_url)))
    if wanted in ("rabbitmq", "both"):
        found.append(Broker("rabbitmq", rabbitmq_url, rabbitmq_problem(rabbitmq_url)))
    return found


def migrate(database_url: str) -> None:
    """Create Conveyor's tables (the ledger) in the benchmark's database."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CONVEYOR_DATABASE__URL": database_url}
    subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, check=True)


@contextmanager
def backing(database_url: str, probe_url: str) -> Iterator[Backing]:
    """PostgreSQL and the probe Redis, embedded where the given ones do not answer."""
    notes: list[str] = []
    with ExitStack() as stack:
        tmp: Path | None = None

        def scratch() -> Path:
            nonlocal tmp
            if tmp is None:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            return tmp

        problem = postgres_problem(database_url)
        if problem is not None:
            postgres = EmbeddedPostgres(scratch() / "postgres", free_port())
            postgres.start()
            stack.callback(postgres.stop)
            postgres.create_database("conveyor_bench")
            notes.append(f"{mask_url(database_url)} unusable ({problem}); embedded PostgreSQL")
            database_url = postgres.url("conveyor_bench")
        problem = redis_problem(probe_url)
        if problem is not None:
            redis_server = EmbeddedRedis(scratch() / "redis", free_port())
            redis_server.start()
            stack.callback(redis_server.stop)
            notes.append(f"probe {mask_url(probe_url)} unusable ({problem}); embedded Redis")
            probe_url = redis_server.url
        migrate(database_url)
        yield Backing(database_url, probe_url, tuple(notes))
