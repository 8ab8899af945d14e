"""Real ``python -m app …`` subprocesses for acceptance tests: worker, beat, web, Flower."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Self

import psutil

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "var" / "test-logs"
#: The probe tasks, registered in every process a test starts.
PROBES = '["tests.acceptance.probe_tasks"]'


class Process:
    """One ``python -m app <command>`` in its own session, logging to a file."""

    command: tuple[str, ...] = ()
    kind = "process"

    def __init__(self, env: dict[str, str] | None = None, name: str | None = None) -> None:
        self.name = name or f"{self.kind[0]}{uuid.uuid4().hex[:6]}"
        # ``env`` adds to (or overrides) this process's environment. Django's settings
        # module, which the test process sets for itself, is left out: each command sets
        # up Django if it needs it, as it does outside the tests.
        self.env = {**os.environ, **(env or {}), "CONVEYOR_TASK_MODULES": PROBES}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def ready(self) -> bool:
        """True once the process can serve (each kind says how it shows it)."""
        raise NotImplementedError

    def start(self, timeout_s: float = 60) -> Self:
        """Start and wait until :meth:`ready`; fail with the log's tail otherwise."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", *self.command],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} {self.name} exited:\n{self.output()[-3000:]}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"{self.kind} {self.name} not ready:\n{self.output()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        """Everything the process logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout_s: float = 30) -> int | None:
        """SIGTERM (a warm shutdown) and wait; SIGKILL the whole session if it hangs."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the whole session (children included): no chance to clean up."""
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(30)
        # Whatever is left of the session (a pool child, a gunicorn worker) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.process is not None:
                os.killpg(self.process.pid, signal.SIGKILL)


class Worker(Process):
    """``python -m app worker``."""

    kind = "worker"

    def __init__(
        self,
        broker_url: str,
        queues: str = "critical,default,emails,reports,background",
        concurrency: int = 1,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__({**(env or {}), "CONVEYOR_BROKER__URL": broker_url}, name)
        self.queues = queues
        self.concurrency = concurrency
        self.command = (
            "worker",
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            f"--hostname={self.hostname}",
            "--without-mingle",
            "--without-gossip",
        )

    @property
    def hostname(self) -> str:
        """The node name Celery reports, e.g. in ``AsyncResult.worker``."""
        return f"{self.name}@{os.uname().nodename}"

    def ready(self) -> bool:
        return " ready." in self.output()

    def pool_pids(self) -> list[int]:
        """Pids of the prefork pool children."""
        return [child.pid for child in psutil.Process(self.pid).children()]

    def terminate(self, timeout_s: float = 60) -> int | None:
        return super().terminate(timeout_s)


class Beat(Process):
    """``python -m app beat``."""

    kind = "beat"
    command = ("beat",)

    def __init__(
        self,
        broker_url: str,
        name: str | None = None,
        clock_offset_s: float = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            {
                **(env or {}),
                "CONVEYOR_BROKER__URL": broker_url,
                "CONVEYOR_BEAT__CLOCK_OFFSET_S": str(clock_offset_s),
            },
            name,
        )

    def ready(self) -> bool:
        return "beat: Starting..." in self.output()

    def terminate(self, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait (beat gives its lease up); SIGKILL if it hangs."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return super().terminate(timeout_s)
        return None


class HttpProcess(Process):
    """A process that serves HTTP on a free port; ready once ``probe`` answers."""

    probe = "/"

    def __init__(self, env: dict[str, str] | None = None, name: str | None = None) -> None:
        from app.embedded import free_port

        self.port = free_port()
        super().__init__(env, name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}{self.probe}", timeout=2).close()
        except urllib.error.HTTPError:
            return True  # it answers, if only to ask for credentials
        except OSError:
            return False
        return True

    def terminate(self, timeout_s: float = 30) -> int | None:
        """SIGTERM the whole session (server and its workers) and wait."""
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return None


class Web(HttpProcess):
    """``python -m app web`` (gunicorn)."""

    kind = "web"
    command = ("web",)
    probe = "/health/live"

    def __init__(self, env: dict[str, str] | None = None, name: str | None = None) -> None:
        super().__init__(env, name)
        self.env.update(CONVEYOR_WEB__PORT=str(self.port), CONVEYOR_WEB__HOST="127.0.0.1")


class Flower(HttpProcess):
    """``python -m app flower`` with basic auth ``user:password``."""

    kind = "flower"
    command = ("flower",)

    def __init__(
        self, broker_url: str, data_dir: Path, auth: str, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(env)
        self.env.update(
            CONVEYOR_BROKER__URL=broker_url,
            CONVEYOR_FLOWER__PORT=str(self.port),
            CONVEYOR_FLOWER__BASIC_AUTH=auth,
            CONVEYOR_EMBEDDED__DATA_DIR=str(data_dir),
        )
