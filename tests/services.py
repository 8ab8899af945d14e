"""The servers the suite runs against: the machine's own, started when down, else embedded.

Order for each: already listening on its standard port → use it; installed but
down → start it the way the machine does; not installed → the embedded server
that ``make run`` uses (PostgreSQL, Redis). RabbitMQ has no embedded fallback:
``CONVEYOR_TEST_RABBITMQ_URL`` names one anywhere, else the machine's is used or
started, and when neither can be had the suite fails loudly, it never skips a broker.
The plugin that calls this for the server tiers is :mod:`tests.servers`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from app.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
#: Where embedded servers keep their data: one directory per test process (pytest-xdist
#: names its processes ``gw0``, ``gw1``…), so parallel processes never share one.
VAR = ROOT / "var" / "test-servers" / os.environ.get("PYTEST_XDIST_WORKER", "main")


@dataclass
class Services:
    """Where each server listens, and what the suite must stop at the end."""

    postgres_admin_url: str
    redis_base_url: str
    rabbitmq_url: str
    notes: list[str] = field(default_factory=list)
    _embedded: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)
    _vhosts: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the embedded servers the suite started (machine services stay up) and
        delete the run's RabbitMQ vhost."""
        for vhost in self._vhosts:
            _rabbitmqctl("delete_vhost", vhost)
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
    given = os.environ.get("CONVEYOR_TEST_RABBITMQ_URL")
    if given:
        # Any host, port and vhost: the machine's RabbitMQ is neither needed nor started.
        parts = urlsplit(given)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        if not port_open(host, port, timeout_s=5):
            raise RuntimeError(
                f"CONVEYOR_TEST_RABBITMQ_URL names a RabbitMQ on {host}:{port}, "
                "but nothing accepts connections there"
            )
        services.rabbitmq_url = given
        services.notes.append("RabbitMQ from CONVEYOR_TEST_RABBITMQ_URL")
        return
    if not port_open("127.0.0.1", 5672) and shutil.which("rabbitmq-server"):
        subprocess.run(
            ["rabbitmq-server", "-detached"], capture_output=True, check=False, timeout=60
        )
        _wait(5672, 90)
        services.notes.append("started the machine's RabbitMQ")
    if not port_open("127.0.0.1", 5672):
        raise RuntimeError(
            "RabbitMQ is not reachable on 127.0.0.1:5672 and could not be started "
            "(install rabbitmq-server, start it, or set CONVEYOR_TEST_RABBITMQ_URL); "
            "the suite tests both brokers, it never skips one"
        )
    vhost = _own_vhost()
    if vhost is None:
        services.rabbitmq_url = "amqp://guest:guest@127.0.0.1:5672//"
        services.notes.append("RabbitMQ's default vhost: rabbitmqctl could not add one")
        return
    services.rabbitmq_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    services._vhosts.append(vhost)


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, check=False, timeout=60)
    return done.returncode == 0


def _own_vhost() -> str | None:
    """A vhost of this run's own on the machine's RabbitMQ, so that two runs never
    purge or consume each other's queues; None when it cannot be added."""
    vhost = f"conveyor-test-{uuid.uuid4().hex[:10]}"
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
    ):
        return vhost
    return None


def provision() -> Services:
    """Make PostgreSQL, Redis and RabbitMQ reachable, starting what is down."""
    services = Services("", "", "")
    try:
        _postgres(services)
        _redis(services)
        _rabbitmq(services)
    except BaseException:
        services.stop()  # the embedded servers started before the one that failed
        raise
    return services


class OwnRabbitMQ:
    """A RabbitMQ node of the test's own on spare ports, for fault tests.

    The machine's RabbitMQ is shared: a test that stops a broker stops this one.
    """

    def __init__(self) -> None:
        # Under /tmp, not pytest's private tmp_path: the node runs as the rabbitmq user.
        self.base = Path(tempfile.mkdtemp(prefix="conveyor-rabbitmq-"))
        self.port = free_port()
        self.node = f"conveyor{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """AMQP URL of the default vhost."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout_s: float = 90) -> None:
        """Start the node and wait for its AMQP listener."""
        binary = shutil.which("rabbitmq-server")
        if binary is None:
            raise RuntimeError(
                "rabbitmq-server is not installed: the fault test needs its own node"
            )
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        if os.geteuid() == 0:  # Debian's wrapper drops to the rabbitmq user
            shutil.chown(self.base, "rabbitmq")
            for path in self.base.iterdir():
                shutil.chown(path, "rabbitmq")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.base / "feature_flags"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }
        with (self.base / "out.log").open("ab") as out:
            self.process = subprocess.Popen(
                [binary], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not port_open("127.0.0.1", self.port):
            self.stop()
            raise RuntimeError(
                f"own RabbitMQ did not start:\n{(self.base / 'out.log').read_text()[-2000:]}"
            )

    def _beams(self) -> list[psutil.Process]:
        # The wrapper script hands over to an Erlang VM in a session of its own:
        # the VM is found by the node name in its environment.
        found = []
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] != "beam.smp":
                continue
            try:
                if proc.environ().get("RABBITMQ_NODENAME") == self.node:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def stop(self) -> None:
        """Stop the node and wait until its port is closed."""
        beams = self._beams()
        for proc in beams:
            proc.terminate()
        _, alive = psutil.wait_procs(beams, timeout=30)
        for proc in alive:
            proc.kill()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
        if self.process is not None:
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        """Stop the node and delete its data."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
