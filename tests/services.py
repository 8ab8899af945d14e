"""The servers the suite runs against: the machine's own, started when down, else embedded.

Order for each: already listening on its standard port → use it; installed but
down → start it the way the machine does; not installed → the embedded server
that ``make run`` uses (PostgreSQL, Redis). RabbitMQ has no embedded fallback:
when it cannot be had the suite fails loudly, it never skips a broker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

from app.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "test-servers"


@dataclass
class Services:
    """Where each server listens, and what the suite must stop at the end."""

    postgres_admin_url: str
    redis_base_url: str
    rabbitmq_url: str
    notes: list[str] = field(default_factory=list)
    _embedded: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the embedded servers the suite started (machine services stay up)."""
        for server in self._embedded:
            server.stop()


def _wait(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return True
        time.sleep(0.25)
    return False


def _postgres(services: Services) -> None:
    if not port_open("127.0.0.1", 5432) and shutil.which("pg_ctlcluster"):
        versions = sorted(Path(p).name for p in glob("/etc/postgresql/*"))
        if versions:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                capture_output=True,
                check=False,
                timeout=60,
            )
            _wait(5432, 30)
            services.notes.append("started the machine's PostgreSQL")
    if port_open("127.0.0.1", 5432):
        services.postgres_admin_url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        return
    server = EmbeddedPostgres(VAR / "postgres", free_port())
    server.start()
    services._embedded.append(server)
    services.postgres_admin_url = server.url("postgres")
    services.notes.append(f"embedded PostgreSQL on port {server.port}")


def _redis(services: Services) -> None:
    if not port_open("127.0.0.1", 6379) and shutil.which("redis-server"):
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            capture_output=True,
            check=False,
            timeout=30,
        )
        _wait(6379, 15)
        services.notes.append("started the machine's Redis")
    if port_open("127.0.0.1", 6379):
        services.redis_base_url = "redis://127.0.0.1:6379"
        return
    server = EmbeddedRedis(VAR / "redis", free_port())
    server.start()
    services._embedded.append(server)
    services.redis_base_url = f"redis://127.0.0.1:{server.port}"
    services.notes.append(f"embedded Redis on port {server.port}")


def _rabbitmq(services: Services) -> None:
    if not port_open("127.0.0.1", 5672) and shutil.which("rabbitmq-server"):
        subprocess.run(
            ["rabbitmq-server", "-detached"], capture_output=True, check=False, timeout=60
        )
        _wait(5672, 90)
        services.notes.append("started the machine's RabbitMQ")
    if not port_open("127.0.0.1", 5672):
        raise RuntimeError(
            "RabbitMQ is not reachable on 127.0.0.1:5672 and could not be started "
            "(install rabbitmq-server or start it); the suite tests both brokers and never skips one"
        )
    services.rabbitmq_url = os.environ.get(
        "CONVEYOR_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"
    )


def provision() -> Services:
    """Make PostgreSQL, Redis and RabbitMQ reachable, starting what is down."""
    services = Services("", "", "")
    _postgres(services)
    _redis(services)
    _rabbitmq(services)
    return services
