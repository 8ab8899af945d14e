"""Benchmark subprocesses (a ``celery worker`` for one variant, the web process), always
stopped afterwards."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from bench.variants import Variant

#: Where ``python -m celery -A bench…`` finds the ``bench`` package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Seconds a warm shutdown may take before the worker's process group is killed.
STOP_TIMEOUT_S = 30.0


def worker_argv(variant: Variant, concurrency: int) -> list[str]:
    """The command line: the flags of ``python -m app worker``, one queue, less logging."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        variant.target,
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        f"--queues={variant.queue}",
        "--task-events",
        # Per-task INFO lines would cost every variant the same and blur the ratio.
        "--loglevel=WARNING",
        f"--hostname=bench-{variant.name}-{os.getpid()}@%h",
    ]


def _stop_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to the worker if the trial dies without stopping it."""
    pr_set_pdeathsig = 1
    with suppress(OSError, AttributeError):  # not Linux: stop() alone must do
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a process group of its own, its output to ``log``, stopped by the
    kernel if this process dies first."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )


@contextmanager
def running_worker(
    variant: Variant, concurrency: int, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a worker in its own process group; on exit stop it, killing what remains."""
    proc = spawn(worker_argv(variant, concurrency), env, log)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (warm shutdown), then SIGKILL to the process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT_S)
    # The group is the worker and its pool children (gunicorn and its workers); none
    # should outlive it.
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def log_tail(log: Path, chars: int = 3000) -> str:
    """The end of a worker's log, for an error message."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
