"""Real ``celery worker`` subprocesses for acceptance tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "var" / "test-logs"


class Worker:
    """``python -m app worker`` in its own session, logging to a file."""

    def __init__(
        self,
        broker_url: str,
        queues: str = "critical,default,emails,reports,background",
        concurrency: int = 1,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.queues = queues
        self.concurrency = concurrency
        self.env = {**os.environ, "CONVEYOR_BROKER__URL": broker_url, **(env or {})}
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def hostname(self) -> str:
        """The node name Celery reports, e.g. in ``AsyncResult.worker``."""
        return f"{self.name}@{os.uname().nodename}"

    def start(self, timeout_s: float = 60) -> Worker:
        """Start and wait until the worker says it is ready."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app",
                    "worker",
                    f"--queues={self.queues}",
                    f"--concurrency={self.concurrency}",
                    f"--hostname={self.hostname}",
                    "--include=tests.acceptance.probe_tasks",
                    "--without-mingle",
                    "--without-gossip",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if " ready." in self.output():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready:\n{self.output()[-3000:]}")

    def output(self) -> str:
        """Everything the worker logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pool_pids(self) -> list[int]:
        """Pids of the prefork pool children."""
        assert self.process is not None
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM (warm shutdown) and wait; SIGKILL the group if it hangs."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the whole worker, pool children included."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(30)


class Beat:
    """``python -m app beat`` (probe tasks registered) in its own session."""

    def __init__(
        self,
        broker_url: str,
        name: str | None = None,
        clock_offset_s: float = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name or f"b{uuid.uuid4().hex[:6]}"
        self.env = {
            **(env or os.environ),
            "CONVEYOR_BROKER__URL": broker_url,
            "CONVEYOR_BEAT__CLOCK_OFFSET_S": str(clock_offset_s),
        }
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> Beat:
        """Start and wait until beat says it is starting its loop."""
        code = (
            "import sys, tests.acceptance.probe_tasks; from app.__main__ import main; "
            "sys.exit(main(['beat']))"
        )
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "beat: Starting..." in self.output():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"beat {self.name} exited:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"beat {self.name} did not start:\n{self.output()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout_s: float = 30) -> None:
        """SIGTERM and wait (beat gives its lease up); SIGKILL if it hangs."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: no chance to give the lease up."""
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Beat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()


class Web:
    """``python -m app web`` (gunicorn) on a free port, probe tasks registered."""

    def __init__(self, env: dict[str, str] | None = None, name: str | None = None) -> None:
        from app.embedded import free_port

        self.name = name or f"web{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.env = {
            **(env or os.environ),
            "CONVEYOR_WEB__PORT": str(self.port),
            "CONVEYOR_WEB__HOST": "127.0.0.1",
            "CONVEYOR_TASK_MODULES": '["tests.acceptance.probe_tasks"]',
        }
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> Web:
        """Start and wait until ``/health/live`` answers."""
        import urllib.request

        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "web"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"web {self.name} exited:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/live", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"web {self.name} did not answer:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout_s: float = 30) -> None:
        """SIGTERM the gunicorn master and wait."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Web:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()
